"""WGS-84 / GCJ-02 / BD-09 conversion, done in Rust a whole batch at a time.

GCJ-02 → WGS-84 is the exact inverse (fixed-point iteration to 1e-12°), not the one-step approximation
that is off by up to a few metres; WGS-84 ↔ GCJ-02 is the identity outside China, as in every public
implementation. BD-09 uses Baidu's published formulas (x_pi = π·3000/180).

>>> lons, lats = convert([104.0657], [30.6595], "wgs84", "gcj02")
>>> round(lons[0], 6), round(lats[0], 6)
(104.068207, 30.657079)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub import _core
from hub.errors import GeoError
from hub.models import CoordSystem

__all__ = ["CoordSystem", "convert", "convert_point", "coord_system"]


def coord_system(value: CoordSystem | str) -> CoordSystem:
    """``value`` as a :class:`CoordSystem` (case-insensitive name); :class:`GeoError` when unknown."""
    try:
        return CoordSystem(value.lower() if isinstance(value, str) else value)
    except ValueError:
        known = ", ".join(repr(system.value) for system in CoordSystem)
        raise GeoError(f"unknown coordinate system {value!r}: expected one of {known}") from None


def convert(
    lons: Sequence[float] | Any,
    lats: Sequence[float] | Any,
    src: CoordSystem | str,
    dst: CoordSystem | str,
) -> tuple[list[float], list[float]]:
    """Converts batches of longitudes and latitudes from ``src`` to ``dst``.

    Accepts sequences of floats or float buffers (numpy arrays, ``array.array``). Raises
    :class:`hub.errors.GeoError` naming the first point that is NaN or out of range, or an unknown system.
    """
    return _core.convert_coords(lons, lats, coord_system(src).value, coord_system(dst).value)


def convert_point(lon: float, lat: float, src: CoordSystem | str, dst: CoordSystem | str) -> tuple[float, float]:
    """Converts one point; for many points use :func:`convert`, which crosses into Rust once."""
    lons, lats = convert([lon], [lat], src, dst)
    return lons[0], lats[0]
