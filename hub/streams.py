"""The JetStream streams behind the subject contract (:mod:`hub.topology`), created or updated on start-up.

Retention and limits are configurable per stream (``[streams.<name>]`` in ``cityhub.toml``, the model is
:class:`StreamsSettings`). Every stream keeps messages by limits (age, bytes, count): the ingest stream
must, because after a crash the pipeline rebuilds its state by re-reading ingest from its last snapshot.
"""

from __future__ import annotations

import logging
from typing import Literal

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field

from hub import topology

log = logging.getLogger("cityhub.streams")

DAY_S = 86_400.0


class StreamLimits(BaseModel):
    """Limits of one stream; when one is reached the oldest messages are discarded."""

    model_config = ConfigDict(extra="forbid")

    max_age_s: float = Field(7 * DAY_S, ge=0, description="Keep messages this long (0: for ever).")
    max_bytes: int = Field(-1, ge=-1, description="Total size limit in bytes (-1: none).")
    max_msgs: int = Field(-1, ge=-1, description="Message count limit (-1: none).")
    max_msg_size: int = Field(-1, ge=-1, description="Largest message the stream accepts (-1: server's max_payload).")
    storage: Literal["file", "memory"] = Field("file", description="file survives a server restart; memory does not.")
    replicas: int = Field(1, ge=1, le=5, description="Copies in a clustered deployment.")
    duplicate_window_s: float = Field(
        120.0, gt=0, description="How long JetStream remembers Nats-Msg-Id to drop re-publications."
    )


class StreamsSettings(BaseModel):
    """Limits of each CityHub stream."""

    model_config = ConfigDict(extra="forbid")

    ingest: StreamLimits = Field(default_factory=StreamLimits)
    events: StreamLimits = Field(default_factory=StreamLimits)
    incidents: StreamLimits = Field(default_factory=lambda: StreamLimits(max_age_s=30 * DAY_S))
    dispatch: StreamLimits = Field(default_factory=lambda: StreamLimits(max_age_s=30 * DAY_S))
    dlq: StreamLimits = Field(default_factory=lambda: StreamLimits(max_age_s=30 * DAY_S))

    def by_stream(self) -> dict[str, StreamLimits]:
        """Limits keyed by JetStream stream name."""
        return {
            topology.INGEST_STREAM: self.ingest,
            topology.EVENTS_STREAM: self.events,
            topology.INCIDENTS_STREAM: self.incidents,
            topology.DISPATCH_STREAM: self.dispatch,
            topology.DLQ_STREAM: self.dlq,
        }


def stream_config(name: str, limits: StreamLimits) -> StreamConfig:
    """The JetStream configuration of one CityHub stream."""
    return StreamConfig(
        name=name,
        description=f"CityHub {name.removeprefix('CITYHUB_').lower()} stream",
        subjects=topology.STREAM_SUBJECTS[name],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=limits.max_age_s,
        max_bytes=limits.max_bytes,
        max_msgs=limits.max_msgs,
        max_msg_size=limits.max_msg_size,
        storage=StorageType.FILE if limits.storage == "file" else StorageType.MEMORY,
        num_replicas=limits.replicas,
        duplicate_window=limits.duplicate_window_s,
    )


async def ensure_streams(js: JetStreamContext, settings: StreamsSettings | None = None) -> list[StreamInfo]:
    """Create every CityHub stream that is missing and update the ones whose limits changed."""
    settings = settings or StreamsSettings()
    return [await ensure_stream(js, stream_config(name, limits)) for name, limits in settings.by_stream().items()]


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    try:
        await js.stream_info(config.name)
    except NotFoundError:
        log.info("creating stream %s", config.name)
        return await js.add_stream(config)
    return await js.update_stream(config)
