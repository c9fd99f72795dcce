"""The load of the end-to-end benchmarks: events published to a JetStream ingest subject, as fast as the
server acknowledges them or paced at a steady rate."""

from __future__ import annotations

import asyncio
import time


async def publish_load(
    js,
    subject: str,
    raws: list[bytes],
    msg_ids: list[str] | None = None,  # noqa: ANN001
    pace_per_s: float | None = None,
) -> None:
    """Publish ``raws`` to ``subject`` (each with its ``Nats-Msg-Id`` when ``msg_ids`` are given): as fast as
    possible in steps of 500, or paced at ``pace_per_s`` in steps of 20 events (bursts of a whole batch would
    measure the burst, not the consumer)."""
    step = 20 if pace_per_s else 500
    started = time.monotonic()
    for start in range(0, len(raws), step):
        futures = [
            await js.publish_async(subject, raw, headers={"Nats-Msg-Id": msg_ids[start + offset]} if msg_ids else None)
            for offset, raw in enumerate(raws[start : start + step])
        ]
        await asyncio.gather(*futures)
        if pace_per_s:
            await asyncio.sleep(max(0.0, started + (start + step) / pace_per_s - time.monotonic()))
