"""The NATS plumbing: connecting (:mod:`~hub.nats.natsconn`, :mod:`~hub.nats.natslink`), the embedded server
(:mod:`~hub.nats.embedded`), streams and buckets (:mod:`~hub.nats.streams`), batched consume
(:mod:`~hub.nats.fetcher`, :mod:`~hub.nats.follower`), fast-ingest publish (:mod:`~hub.nats.publisher`) and
keeping every output within the server's max_payload (:mod:`~hub.nats.sizes`)."""
