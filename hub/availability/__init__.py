"""Always on: several ``cityhub run`` processes with the same config elect one active hub through NATS.

- :mod:`.lease` — the lease: one key in the JetStream KV bucket ``CITYHUB_LEASE`` whose TTL is the bucket's
  ``max_age``, taken with a create-if-absent and renewed with a revision-checked update; the lease is also
  the fence every pipeline write is gated on.
- :mod:`.elector` — the role loop: campaign while standing by, renew while active, and switch the hub's
  active parts (pipeline, escalation, connectors) on and off to follow the lease.
- :mod:`.keeper` — the lease's calls on a thread and a NATS connection of their own, so a busy event loop
  never delays a renewal.
- :mod:`.gate` — the lease shared with the hub's connector processes: they run only while it lets them.
- :mod:`.terms` — durable consumers named after the lease term, so a deposed hub's acknowledgements reach none
  of its successor's.
- :mod:`.fence` — the active hub's mark on every output stream, which JetStream checks on each of its
  outputs, so a deposed hub's outputs are refused by the server.
- :mod:`.fingerprint` — what must be equal between the hubs that share one set of streams.
"""

from hub.availability.elector import Elector
from hub.availability.fence import OutputFence
from hub.availability.fingerprint import pipeline_fingerprint
from hub.availability.lease import LEASE_BUCKET, Holder, Lease, LeaseLost

__all__ = ["LEASE_BUCKET", "Elector", "Holder", "Lease", "LeaseLost", "OutputFence", "pipeline_fingerprint"]
