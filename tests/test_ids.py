"""Event ids: ULID-shaped, ordered by time, and stable across releases (JetStream drops a re-published
output only when its id is the same as before the crash or upgrade)."""

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ids import time_ordered_id, time_ordered_ids
from hub.incidents import IncidentMerger, MergePolicy
from hub.models import CloseRequest

MOMENT = datetime(2026, 11, 23, 8, 30, 0, 123000, tzinfo=UTC)


def test_id_is_pinned() -> None:
    # computed with the first release's encoder (standard-library base-32, alphabet swapped to Crockford's)
    assert time_ordered_id(MOMENT, "iot_mqtt:r-1") == "01M83RDEXVGSK35WXJH6BQ1DDC"


def test_ids_sort_by_time_then_key() -> None:
    ids = [time_ordered_id(MOMENT + timedelta(milliseconds=n), f"k{n % 7}") for n in range(0, 5_000, 37)]
    assert ids == sorted(ids)
    assert all(len(value) == 26 and value.isalnum() for value in ids)


def _first_release_id(time: float, key: str) -> str:
    """The first release's encoder, kept as the oracle: standard-library base-32 with Crockford's alphabet."""
    millis = max(0, int(time * 1000)) & ((1 << 48) - 1)
    entropy = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=10).digest(), "big")
    digits = base64.b32encode(((millis << 80) | entropy).to_bytes(20, "big")).decode()[-26:]
    return digits.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHJKMNPQRSTVWXYZ"))


@settings(max_examples=500)
@given(
    st.lists(
        st.tuples(
            st.floats(-1e3, 253_402_300_799.0, allow_nan=False),
            st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
        ),
        max_size=20,
    )
)
def test_batch_ids_match_the_first_release_encoder(pairs: list[tuple[float, str]]) -> None:
    times, keys = [time for time, _ in pairs], [key for _, key in pairs]
    assert time_ordered_ids(times, keys) == [_first_release_id(time, key) for time, key in pairs]


def test_times_and_keys_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 times but 1 keys"):
        time_ordered_ids([1.0, 2.0], ["k"])


def test_every_incident_id_the_merger_makes_has_the_shape_close_requests_accept() -> None:
    event_ids = time_ordered_ids([1_795_422_600.0 + n for n in range(3)], ["a", "b", "c"])
    repeated = [event_ids[n % 3] for n in range(9)]  # the same opening event id, still open: ~<n> suffixes
    categories = ["fire", "noise", "tree", "smoke", "sanitation", "bin_full", "elder_sos", "complaint", "other"]
    merged = IncidentMerger(MergePolicy()).add_columns(
        repeated, [float(n) for n in range(9)], categories, *([[None] * 9] * 4)
    )
    assert len(set(merged.incident_ids)) == 9 and any("~" in incident_id for incident_id in merged.incident_ids)
    assert [
        CloseRequest(incident_id=incident_id, reason="r", time=MOMENT).incident_id
        for incident_id in merged.incident_ids
    ] == merged.incident_ids
