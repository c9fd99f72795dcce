"""The lowest running hub whose scope holds an event's cell handles it."""

from __future__ import annotations

import pytest

from hub.federation.ownership import KEEP, OutsideScope, Ownership
from hub.federation.scope import CITY_SCOPE, Scope

DISTRICT = Scope("district", "510104", "510104")
STREET = Scope("street", "510104-01", "510104")


def test_the_city_hands_a_running_districts_events_down_and_keeps_the_rest():
    city = Ownership(CITY_SCOPE, frozenset({"510104", "510105"}))
    assert city.route("510104", "510104-03") == "510104"
    assert city.route("510108", "510108-01") == KEEP  # no hub runs in 510108
    assert city.route(None, None) == KEEP


def test_a_district_hands_its_streets_events_down_and_refuses_another_districts():
    district = Ownership(DISTRICT, frozenset({"510104-01"}))
    assert district.route("510104", "510104-01") == "510104-01"
    assert district.route("510104", "510104-02") == KEEP
    assert district.route(None, None) == KEEP  # located nowhere: stays where it entered
    with pytest.raises(
        OutsideScope, match=r"located in street 510105-02, outside this hub's scope \(district 510104\)"
    ):
        district.route("510105", "510105-02")


def test_a_street_keeps_its_own_and_refuses_its_neighbours():
    street = Ownership(STREET)
    assert street.route("510104", "510104-01") == KEEP
    with pytest.raises(OutsideScope, match="located in street 510104-02"):
        street.route("510104", "510104-02")
