"""Hypothesis strategies for ingest documents: events as senders write them, valid and not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

from hypothesis import strategies as st

from hub.models import Category, CoordSystem, Severity

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)

times = st.one_of(
    st.datetimes(
        min_value=datetime(2025, 5, 1),
        max_value=datetime(2026, 5, 3),
        timezones=st.none()
        | st.builds(
            timezone,
            st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)).map(
                lambda d: timedelta(minutes=d // timedelta(minutes=1))
            ),
        ),
    ).map(lambda t: t.isoformat()),
    st.sampled_from(
        [
            "2026-05-01T08:00:00+08:00",
            "2026-05-01T08:00:00Z",
            "2026-04-30T23:59:59.5Z",
            "2026-05-01T08:00:00",
            "2026-05-01 08:00:00Z",
            "2026-05-01T08:00:00z",
            "2026-05-01T08:00:00+0800",
            "2026-05-01T08:00:00.1234567Z",
            "2027-05-01T00:00:00Z",
            "2020-01-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-05-01T24:00:00Z",
        ]
    ),
    st.integers(min_value=1_700_000_000, max_value=1_777_600_000),
    json_values,
)


def _text_near(limit: int) -> st.SearchStrategy[str]:
    return st.integers(min_value=limit - 2, max_value=limit + 1).map(lambda n: "字" * n)


locations = st.fixed_dictionaries(
    {"lon": st.one_of(st.floats(-200, 200), st.integers(-181, 181)), "lat": st.floats(-95, 95)},
    optional={
        "crs": st.sampled_from([*CoordSystem, "utm", None]),
        "accuracy_m": st.one_of(st.none(), st.floats(-1, 100), st.text(max_size=3)),
        "extra": json_scalars,
    },
).map(lambda d: {k: (v.value if isinstance(v, Enum) else v) for k, v in d.items()})

events = st.fixed_dictionaries(
    {
        "source": st.sampled_from(["iot", "iot", "Iot", "io t", "other"]),
        "category": st.one_of(st.sampled_from([c.value for c in Category]), st.sampled_from(["lava", 3, None])),
        "time": times,
    },
    optional={
        "source_event_id": st.one_of(st.text(max_size=8), _text_near(256), st.integers()),
        "severity": st.one_of(st.sampled_from([s.value for s in Severity]), st.just("urgent")),
        "location": st.one_of(locations, st.none(), json_scalars),
        "address": st.one_of(st.none(), st.text(max_size=20), _text_near(512)),
        "grid_path": st.lists(
            st.fixed_dictionaries(
                {
                    "layer": st.text(max_size=3),
                    "level": st.just("district"),
                    "id": st.text(max_size=3),
                    "name": st.text(max_size=3),
                },
                optional={"distance_m": st.one_of(st.integers(-1, 5), st.floats(0, 5))},
            ),
            max_size=2,
        ),
        "reporter": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {}, optional={"name": st.one_of(st.text(max_size=4), st.integers()), "phone": st.text(max_size=11)}
            ),
        ),
        "attachments": st.lists(
            st.fixed_dictionaries(
                {"url": st.text(max_size=5), "media_type": st.just("image/jpeg")},
                optional={"size_bytes": st.one_of(st.integers(-1, 2**70), st.floats(0, 9))},
            ),
            max_size=2,
        ),
        "text": st.one_of(st.none(), st.text(max_size=30), _text_near(8192)),
        "payload": st.one_of(st.dictionaries(st.text(max_size=6), json_values, max_size=4), json_scalars),
        "device_id": st.one_of(st.none(), st.text(max_size=5)),
        "status": st.one_of(st.none(), st.text(max_size=5), st.booleans()),
        "id": st.one_of(st.none(), st.text(max_size=5)),
        "unknown_field": json_scalars,
    },
)


strict_times = st.datetimes(
    min_value=datetime(2025, 5, 2),
    max_value=datetime(2026, 5, 1, 12),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-3, minutes=-30))]),
).map(lambda t: t.isoformat().replace("+00:00", "Z"))
short_text = st.text(max_size=10)
valid_events = st.fixed_dictionaries(
    {"source": st.just("iot"), "category": st.sampled_from([c.value for c in Category]), "time": strict_times},
    optional={
        "source_event_id": short_text,
        "severity": st.sampled_from([s.value for s in Severity]),
        "location": st.fixed_dictionaries(
            {"lon": st.floats(-180, 180) | st.integers(-180, 180), "lat": st.floats(-90, 90)},
            optional={"crs": st.sampled_from([c.value for c in CoordSystem]), "accuracy_m": st.floats(0, 1e6)},
        ),
        "address": short_text,
        "grid_path": st.lists(
            st.fixed_dictionaries(
                {"layer": short_text, "level": short_text, "id": short_text, "name": short_text},
                optional={"distance_m": st.floats(0, 1e4) | st.integers(0, 10)},
            ),
            max_size=2,
        ),
        "reporter": st.fixed_dictionaries(
            {}, optional={name: short_text | st.none() for name in ("name", "phone", "id_card", "account")}
        ),
        "attachments": st.lists(
            st.fixed_dictionaries(
                {"url": short_text, "media_type": short_text},
                optional={"size_bytes": st.integers(0, 2**62), "sha256": short_text},
            ),
            max_size=2,
        ),
        "text": st.text(max_size=40) | st.none(),
        "payload": st.dictionaries(short_text, json_values, max_size=4),
        "device_id": short_text,
        "status": short_text | st.none(),
        "id": short_text | st.none(),
    },
)


def as_json(value: Any) -> bytes:
    """JSON as a sender may write it: the standard library keeps integers beyond 64 bits (orjson refuses)."""
    return json.dumps(value, ensure_ascii=False).encode()
