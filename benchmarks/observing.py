"""What the end-to-end benchmarks read from outside the code they measure: the CPU time a process has used
(Linux /proc) and when a JetStream stream stored each event (the server's own timestamps, so the latency of a
path is measured by the servers it crosses, on one machine's clock)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import orjson
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hub import topology


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process ``pid`` so far (0 where /proc is not there)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stored_times(js, stream: str, first_seq: int = 1) -> dict[str, float]:  # noqa: ANN001 - a JetStreamContext
    """source_event_id → when ``stream`` stored it (first occurrence), for its messages from ``first_seq`` on
    (CloudEvents, or canonical events as a hub hands them down)."""
    subscription = await js.pull_subscribe(
        topology.STREAM_SUBJECTS[stream][0],
        stream=stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first_seq
        ),
    )
    total = (await subscription.consumer_info()).num_pending
    times: dict[str, float] = {}
    seen = 0
    while seen < total:
        msgs = await subscription.fetch(min(5_000, total - seen), timeout=10)
        seen += len(msgs)
        for msg in msgs:
            document = orjson.loads(msg.data)
            key = document.get("data", document)["source_event_id"]
            times.setdefault(key, msg.metadata.timestamp.timestamp())
    await subscription.unsubscribe()
    return times


def p50_p99(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]
