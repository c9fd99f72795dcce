"""Event ids: ULID-shaped, ordered by time, and stable across releases (JetStream drops a re-published
output only when its id is the same as before the crash or upgrade)."""

from datetime import datetime, timedelta, timezone

from hub.ids import time_ordered_id

MOMENT = datetime(2026, 11, 23, 8, 30, 0, 123000, tzinfo=timezone.utc)


def test_id_is_pinned() -> None:
    # computed with the first release's encoder (standard-library base-32, alphabet swapped to Crockford's)
    assert time_ordered_id(MOMENT, "iot_mqtt:r-1") == "01M83RDEXVGSK35WXJH6BQ1DDC"


def test_ids_sort_by_time_then_key() -> None:
    ids = [time_ordered_id(MOMENT + timedelta(milliseconds=n), f"k{n % 7}") for n in range(0, 5_000, 37)]
    assert ids == sorted(ids)
    assert all(len(value) == 26 and value.isalnum() for value in ids)
