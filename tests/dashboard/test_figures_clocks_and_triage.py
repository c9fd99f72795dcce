"""What the dashboard makes of the pipeline's fields: response times count from the hub's reception of an
incident's first report and leave late incidents (a flushed buffer, an import from last year) out; open
incidents in triage (no cell) are counted; an area warning shows how many of its grids confirmed."""

from __future__ import annotations

from datetime import timedelta

from stream_samples import T0, make_incident, make_order, make_update

from hub.models import Area, DispatchStatus, GridCell, Triage
from tests.waiting import wait_until


async def test_response_times_count_from_reception_and_leave_late_incidents_out(state, writer):
    received = T0 + timedelta(days=400)  # the source dated it long before the hub had it
    on_time = make_incident(31, opened_at=T0).model_copy(update={"received_at": received})
    late = make_incident(32, opened_at=T0).model_copy(update={"received_at": received, "late": True})
    for number, incident in ((1, on_time), (2, late)):
        order = make_order(incident, number).model_copy(update={"created_at": received})
        await writer.incident(incident)
        await writer.order(order)
        await writer.update(make_update(order, DispatchStatus.RESOLVED, 10))

    def both_resolved() -> bool:
        pages = [state.incident(incident.id) for incident in (on_time, late)]
        return all(page and page["orders"] and page["orders"][0]["status"] == "resolved" for page in pages)

    await wait_until(both_resolved, "both orders resolved")

    resolve = state.figures()["time_to_resolve"]["all"]
    assert resolve == {"count": 1, "median_s": 600.0, "p90_s": 600.0}


async def test_open_incidents_in_triage_are_counted(state, writer):
    unplaced = make_incident(41).model_copy(update={"grid_path": [], "triage": Triage.NO_CELL})
    await writer.incident(make_incident(40))
    await writer.incident(unplaced)
    await wait_until(lambda: state.figures()["open"] == 2, "both incidents shown")

    assert state.figures()["no_cell"] == 1


async def test_an_area_warning_shows_how_many_grids_confirmed_and_which_did_not(state, writer):
    cells = [GridCell(layer="admin", level="grid", id=f"G{n}", name=f"网格{n}") for n in range(3)]
    warning = make_incident(50).model_copy(
        update={"area": Area(id="CB-1", geometry={"type": "Polygon", "coordinates": []}, cells=cells)}
    )
    await writer.incident(warning)
    orders = [
        make_order(warning, n + 1).model_copy(update={"target": f"cell:{cell.id}", "grid_cell": cell, "attempt": 1})
        for n, cell in enumerate(cells)
    ]
    for order in orders:
        await writer.order(order)
    await writer.update(make_update(orders[0], DispatchStatus.ACCEPTED, 1))
    await writer.update(make_update(orders[1], DispatchStatus.REJECTED, 1))

    def confirmation() -> dict | None:
        page = state.incident(warning.id)
        return page["summary"]["confirmation"] if page and len(page["orders"]) == 3 else None

    await wait_until(lambda: (confirmation() or {}).get("confirmed") == 1, "the first grid's confirmation")
    assert confirmation() == {
        "confirmed": 1,
        "cells": 3,
        "unconfirmed": [{"id": "G1", "name": "网格1"}, {"id": "G2", "name": "网格2"}],
    }
    await writer.incident(make_incident(51))
    await wait_until(lambda: state.incident("INC000051") is not None, "an incident that is no area warning")
    assert state.incident("INC000051")["summary"]["confirmation"] is None
