"""The JetStream streams behind the subject contract (:mod:`hub.topology`), created or updated on start-up
with the retention and limits of ``[nats.streams.<name>]`` (:class:`hub.config.StreamsConfig`).

The ingest stream must keep messages by limits: after a crash the pipeline rebuilds its state by re-reading
ingest from its last snapshot, so acknowledged input has to stay there for a while.

The hub's own state buckets (pipeline snapshots, escalation deadlines) are created here too, with the
replicas of ``[nats.buckets]``; the parts that use them bind to them with :func:`open_object_store` and
:func:`open_key_value`, which create a missing one with the defaults (a hub part run on its own, in tests).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from hub import topology
from hub.config import BucketsConfig, StreamLimits, StreamsConfig, TierConfig
from hub.errors import ConfigError
from hub.federation.sourcing import federate

log = logging.getLogger("cityhub.streams")

# The hub's own buckets (the lease bucket is hub.availability's).
SNAPSHOT_BUCKET = "CITYHUB_PIPELINE"
ESCALATION_BUCKET = "CITYHUB_ESCALATIONS"

_RETENTION = {
    "limits": RetentionPolicy.LIMITS,
    "interest": RetentionPolicy.INTEREST,
    "workqueue": RetentionPolicy.WORK_QUEUE,
}


def streams_by_name(config: StreamsConfig) -> dict[str, StreamLimits]:
    """The limits of each CityHub stream, keyed by JetStream stream name."""
    return {
        topology.INGEST_STREAM: config.ingest,
        topology.EVENTS_STREAM: config.events,
        topology.INCIDENTS_STREAM: config.incidents,
        topology.DISPATCH_STREAM: config.dispatch,
        topology.DLQ_STREAM: config.dlq,
    }


def stream_config(name: str, limits: StreamLimits) -> StreamConfig:
    """The JetStream configuration of one CityHub stream."""
    return StreamConfig(
        name=name,
        description=f"CityHub {name.removeprefix('CITYHUB_').lower()} stream",
        subjects=topology.STREAM_SUBJECTS[name],
        retention=_RETENTION[limits.retention],
        discard=DiscardPolicy.OLD,
        max_age=limits.max_age.total_seconds() if limits.max_age else 0,
        max_bytes=limits.max_bytes,
        max_msgs=limits.max_msgs,
        storage=StorageType.FILE if limits.storage == "file" else StorageType.MEMORY,
        num_replicas=limits.replicas,
        duplicate_window=limits.duplicate_window.total_seconds(),
        allow_batched=True,  # the pipeline publishes with fast ingest (hub.nats.publisher); older servers ignore it
        allow_rollup_hdrs=True,  # a new fence mark replaces the one before it (hub.availability.fence)
    )


async def ensure_streams(
    js: JetStreamContext, config: StreamsConfig | None = None, tier: TierConfig | None = None
) -> list[StreamInfo]:
    """Create every CityHub stream that is missing and update the ones whose limits changed. The hub passes its
    ``tier``: the streams then source from the hubs above and below (:mod:`hub.federation.sourcing`). Callers
    without one (connector processes) leave the sources a stream has as they are."""
    config = config or StreamsConfig()
    if config.ingest.retention != "limits":
        raise ConfigError(
            f"nats.streams.ingest.retention must be 'limits', not {config.ingest.retention!r}: "
            "the pipeline re-reads acknowledged input after a crash"
        )
    configs = [stream_config(name, limits) for name, limits in streams_by_name(config).items()]
    if tier is None:
        return [await ensure_stream(js, stream, keep_sources=True) for stream in configs]
    parent = tier.parent.scope if tier.parent else None
    return [await ensure_stream(js, stream) for stream in federate(configs, tier.scope, parent, tier.children)]


async def ensure_stream(js: JetStreamContext, config: StreamConfig, keep_sources: bool = False) -> StreamInfo:
    assert config.name is not None, "every stream of the subject contract has a name"
    try:
        existing = await js.stream_info(config.name)
    except NotFoundError:
        log.info("creating stream %s", config.name)
        return await js.add_stream(config)
    if keep_sources:
        config = replace(config, sources=existing.config.sources)
    return await js.update_stream(config)


async def ensure_buckets(js: JetStreamContext, config: BucketsConfig | None = None) -> None:
    """Create the pipeline's snapshot store and the escalation deadlines bucket when missing, with
    ``config.replicas`` copies."""
    replicas = (config or BucketsConfig()).replicas
    await open_object_store(js, SNAPSHOT_BUCKET, replicas=replicas)
    await open_key_value(js, ESCALATION_BUCKET, replicas=replicas)


async def open_object_store(js: JetStreamContext, bucket: str, replicas: int = 1) -> ObjectStore:
    """Bind to object store ``bucket``; create it (with ``replicas``) when missing."""
    try:
        return await js.object_store(bucket)
    except NotFoundError:
        log.info("creating object store %s (replicas %d)", bucket, replicas)
        return await js.create_object_store(bucket, replicas=replicas)


async def open_key_value(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    """Bind to KV bucket ``bucket`` (one revision per key); create it (with ``replicas``) when missing."""
    try:
        return await js.key_value(bucket)
    except NotFoundError:
        log.info("creating key-value bucket %s (replicas %d)", bucket, replicas)
        return await js.create_key_value(bucket=bucket, history=1, replicas=replicas)


async def has_key(kv: KeyValue, key: str) -> bool:
    """Whether ``key`` holds a value in ``kv`` (a get: no consumer is created)."""
    try:
        await kv.get(key)
    except KeyNotFoundError:
        return False
    return True
