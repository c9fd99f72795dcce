"""Helpers for tests of NATS connection settings."""

from __future__ import annotations

import asyncio

import pytest

from hub.config import NatsConfig
from hub.errors import NatsConnectError
from hub.nats.natsconn import connect

HANG_GUARD_S = 60.0  # only stops a hung test: a wait of an hour that is never reached shows the error is immediate
AN_HOUR = "1h"


async def connect_error(settings: NatsConfig) -> str:
    """The message of the NatsConnectError that connecting with ``settings`` raises."""
    async with asyncio.timeout(HANG_GUARD_S):
        with pytest.raises(NatsConnectError) as raised:
            await connect(settings)
    return str(raised.value)
