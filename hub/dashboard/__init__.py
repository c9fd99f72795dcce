"""The operations centre's live view: a web page served by the admin API, fed from the unified stream.

:class:`~hub.dashboard.state.LiveState` follows the stream on NATS and keeps open incidents and figures;
:func:`~hub.dashboard.routes.build_router` serves the page, its JSON APIs and server-sent events. The hub
wires both in::

    state = live_state(hub.config.dashboard)
    await state.start(nc)  # the hub's NATS connection
    app = create_admin_app(hub, routers=[build_router(state, token_check=require_token)])
    ...
    await state.stop()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hub.dashboard.routes import build_router
from hub.dashboard.state import LiveState

if TYPE_CHECKING:
    from hub.config import DashboardConfig

__all__ = ["LiveState", "build_router", "live_state"]


def live_state(config: DashboardConfig, *, links: bool = False) -> LiveState:
    """A LiveState with the window and retention of ``[dashboard]``; ``links`` on a hub among tiers."""
    return LiveState(window=config.window, keep_closed=config.keep_closed, links=links)
