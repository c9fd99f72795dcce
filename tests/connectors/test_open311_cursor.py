"""The Open311 incremental poll (cursor + keyset pagination) against an oracle: whatever the interleaving of
updates, ties on one timestamp, page sizes and updates landing between two pages of one poll, every version of a
request that a quiet poll can see is taken, and none is taken twice. The "server" is the GeoReport v2 query
semantics (updated_after is exclusive, ordered by updated time then id, page/page_size) over a dict."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cityhub_hotline12345.open311 import Cursor, pages_from

T0 = datetime(2026, 7, 1, tzinfo=UTC)
OVERLAP = timedelta(seconds=1)
SERVER_MAX_PAGE = 4

update = st.tuples(st.integers(0, 5), st.integers(0, 2))  # (request id, seconds after the newest update so far)
step = st.one_of(
    st.tuples(st.just("update"), st.lists(update, min_size=1, max_size=6)),
    st.tuples(st.just("poll"), st.integers(1, 4), st.lists(update, max_size=3)),  # page size, updates mid-poll
)


class Server:
    def __init__(self) -> None:
        self.updated: dict[str, datetime] = {}
        self.clock = T0

    def apply(self, changes: list[tuple[int, int]]) -> None:
        for rid, gap in changes:
            self.clock += timedelta(seconds=gap)
            self.updated[f"r{rid}"] = self.clock

    def query(self, after: datetime, page: int, page_size: int) -> list[dict[str, str]]:
        rows = sorted((ts, rid) for rid, ts in self.updated.items() if ts > after)
        chosen = rows[(page - 1) * page_size : page * page_size]
        return [{"service_request_id": rid, "updated_datetime": ts.isoformat()} for ts, rid in chosen]

    def versions(self) -> set[tuple[str, str]]:
        return {(rid, ts.isoformat()) for rid, ts in self.updated.items()}


async def _poll(server: Server, cursor: Cursor, page_size: int, mid_poll: list[tuple[int, int]], taken: list) -> None:
    pending = list(mid_poll)

    async def fetch(after: datetime, page: int, size: int) -> list[dict[str, str]]:
        if pending:  # an update lands between two pages of this poll
            server.apply([pending.pop(0)])
        return server.query(after, page, min(size, SERVER_MAX_PAGE))

    async for records in pages_from(fetch, cursor, OVERLAP, page_size, SERVER_MAX_PAGE):
        for record in records:
            updated = datetime.fromisoformat(record["updated_datetime"])
            if cursor.is_new(record["service_request_id"], updated):
                taken.append((record["service_request_id"], record["updated_datetime"]))
                cursor.advance(record["service_request_id"], updated)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step, max_size=12), final_page_size=st.integers(1, 4))
# Paging past page 1 of a full overlap window while r0 moves to the end shifts r1 back onto the page already read.
@example(
    steps=[("update", [(0, 0), (2, 0), (3, 0), (4, 0)]), ("poll", 1, []), ("poll", 4, [(1, 1), (0, 1)])],
    final_page_size=1,
)
def test_every_visible_version_is_taken_exactly_once(steps, final_page_size):
    server, cursor, taken = Server(), Cursor(updated=T0 - timedelta(days=1)), []
    must_take: set[tuple[str, str]] = set()
    for kind, *args in steps:
        if kind == "update":
            server.apply(args[0])
        else:
            page_size, mid_poll = args
            asyncio.run(_poll(server, cursor, page_size, mid_poll, taken))
    asyncio.run(_poll(server, cursor, final_page_size, [], taken))  # a quiet poll sees everything current
    must_take |= server.versions()

    assert len(taken) == len(set(taken)), "a version was taken twice"
    assert must_take <= set(taken), "a version visible to a quiet poll was missed"
    # a reload from the stored form continues exactly where it stopped
    restored = Cursor.load(cursor.dump(), start=T0)
    assert (restored.updated, restored.recent, restored.pinned) == (cursor.updated, cursor.recent, cursor.pinned)
