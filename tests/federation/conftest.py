"""Fixtures of the tier tests: a deployment's real nats-servers on loopback, from generated configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.federation.local import LocalTiers
from hub.federation.scope import GridHierarchy
from hub.geofence import LayerSpec

GRIDS = Path(__file__).resolve().parents[2] / "hub" / "data" / "grids" / "chengdu_admin_gcj02.geojson"


@pytest.fixture(scope="session")
def hierarchy() -> GridHierarchy:
    return GridHierarchy.from_layers([LayerSpec(name="admin", path=GRIDS, crs="gcj02")])


@pytest.fixture
async def tiers(tmp_path: Path, hierarchy: GridHierarchy):
    """The city, districts 510104 (with street 510104-01) and 510105, linked as leafnodes."""
    deployment = LocalTiers(tmp_path / "tiers", hierarchy, ["city", "510104", "510104-01", "510105"]).start()
    try:
        await deployment.wait_linked()
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
async def city_and_two_districts(tmp_path: Path, hierarchy: GridHierarchy):
    """The city and districts 510104 and 510105, linked as leafnodes."""
    deployment = LocalTiers(tmp_path / "tiers", hierarchy, ["city", "510104", "510105"]).start()
    try:
        await deployment.wait_linked()
        yield deployment
    finally:
        deployment.stop()
