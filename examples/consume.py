"""Consume CityHub's unified stream from NATS: a small, complete example for the operations centre's own
programs. It needs only nats-py and the official CloudEvents SDK, not CityHub itself:

    pip install nats-py cloudevents
    python examples/consume.py --server nats://127.0.0.1:4222 --subject 'cityhub.events.*.*.gas_leak.>' --since 2h

It replays the stream from ``--since`` back (JetStream keeps it) and then follows it live, printing one line
per message. ``--severity`` filters on the CloudEvents extension attribute, without reading ``data``.
``--count`` stops after that many printed messages (handy in scripts and tests). See docs/stream.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta

import nats
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from nats.js.api import ConsumerConfig, DeliverPolicy

DURATION = re.compile(r"^(\d+)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_argument(text: str) -> timedelta:
    match = DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 1d")
    return timedelta(seconds=int(match[1]) * UNIT_SECONDS[match[2]])


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument("--subject", default="cityhub.events.>", help="subject with NATS wildcards")
    parser.add_argument("--since", type=since_argument, help="replay this far back first (e.g. 2h); default: new only")
    parser.add_argument("--severity", help="only messages whose severity extension attribute is this")
    parser.add_argument("--count", type=int, help="stop after printing this many messages")
    return parser.parse_args(argv)


def describe(subject: str, raw: bytes) -> tuple[str | None, str]:
    """(severity, one readable line) of one CloudEvent; the SDK validates the envelope."""
    event = JSONFormat().read(None, raw)
    attributes = event.get_attributes()
    data = event.get_data() or {}
    what = data.get("text") or data.get("summary") or data.get("address") or data.get("status") or ""
    line = " ".join(
        str(part)
        for part in (
            attributes.get("time", ""),
            attributes["type"],
            attributes.get("severity", "-"),
            attributes.get("category", "-"),
            attributes.get("incidentid", "-"),
            subject,
            what,
        )
    )
    return attributes.get("severity"), line


async def consume(options: argparse.Namespace) -> int:
    nc = await nats.connect(options.server)
    js = nc.jetstream()
    printed = 0
    done = asyncio.Event()

    async def on_message(msg) -> None:
        nonlocal printed
        try:
            severity, line = describe(msg.subject, msg.data)
        except (BaseCloudEventException, ValueError, AttributeError) as exc:  # the SDK's errors for bad input
            print(f"unreadable message on {msg.subject}: {exc}", file=sys.stderr)
            return
        if options.severity and severity != options.severity:
            return
        print(line, flush=True)
        printed += 1
        if options.count and printed >= options.count:
            done.set()

    if options.since:
        start = datetime.now(UTC) - options.since
        config = ConsumerConfig(opt_start_time=start)
        policy = DeliverPolicy.BY_START_TIME
    else:
        config, policy = None, DeliverPolicy.NEW
    subscription = await js.subscribe(
        options.subject, cb=on_message, ordered_consumer=True, deliver_policy=policy, config=config
    )
    try:
        await done.wait()
    finally:
        await subscription.unsubscribe()
        await nc.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(consume(arguments(argv)))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
