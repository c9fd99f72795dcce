"""Sizes that always fit: every message the hub publishes stays within the server's ``max_payload``.

nats-server closes a connection that publishes more than ``max_payload`` (headers and payload together), so one
output over the limit would cut the hub off NATS. nats-py checks only the payload, so the hub checks the whole
message, against the limit the server announced in its INFO (``Client.max_payload``), before publishing:

- a dead letter whose original bytes and headers would not fit keeps the original in the object store bucket
  ``CITYHUB_DLQ_ORIGINALS`` under the dead letter's message id (``dlq:<ingest sequence>``) and is published
  with an empty payload and the headers ``CityHub-Original-Object: CITYHUB_DLQ_ORIGINALS/<name>`` and
  ``CityHub-Original-Size``. The object is written only when it is not there already with the same digest,
  so re-publication after a crash stores it once and names the same object;
- any other output (unified event, incident change, dispatch order) is trimmed (:mod:`hub.trimming`): its
  largest optional data fields are left out and named in its ``trimmed`` extension attribute;
- an output that does not fit even then is dead-lettered on ``cityhub.dlq.hub`` (kind ``oversized``), its
  bytes kept in the object store like any other large dead letter.

Objects are written in chunks that fit the limit too (:func:`object_meta`).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectMetaOptions
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_DEFAULT_CHUNK_SIZE, OBJ_DIGEST_TEMPLATE, ObjectStore

from hub import topology, trimming, wire

if TYPE_CHECKING:
    from hub.nats.publisher import Message  # which uses this module: copies are made with dataclasses.replace

log = logging.getLogger("cityhub.sizes")

ORIGINALS_BUCKET = "CITYHUB_DLQ_ORIGINALS"
OVERSIZED_SOURCE = "hub"  # cityhub.dlq.hub: outputs of the hub that could not be made to fit
_HEADER_BLOCK = len(b"NATS/1.0\r\n") + len(b"\r\n")  # status line and the blank line that ends the headers
_CHUNK_ROOM = 1024  # below max_payload for an object chunk, should the client ever add headers to it


def wire_size(message: Message) -> int:
    """What nats-server counts against ``max_payload`` for ``message``: payload plus header block."""
    msg_id_line = len(topology.HEADER_MSG_ID) + len(message.msg_id.encode()) + 4
    return len(message.data) + _HEADER_BLOCK + msg_id_line + (_header_lines(message.headers) if message.headers else 0)


def size_on_the_wire(data: bytes, headers: Mapping[str, str] | None) -> int:
    """What nats-server counts against ``max_payload`` for a publish of ``data`` with ``headers``."""
    return len(data) + (_HEADER_BLOCK + _header_lines(headers) if headers else 0)


def _header_lines(headers: Mapping[str, str]) -> int:
    return sum(len(key) + len(value.encode()) + 4 for key, value in headers.items())  # "key: value\r\n"


def object_meta(name: str, max_payload: int) -> ObjectMeta:
    """Object store metadata whose chunks fit ``max_payload`` (nats-py's default chunk is 128 KiB)."""
    chunk = max(1024, min(OBJ_DEFAULT_CHUNK_SIZE, max_payload - _CHUNK_ROOM))
    return ObjectMeta(name=name, options=ObjectMetaOptions(max_chunk_size=chunk))


class SizeGuard:
    """Makes a batch of outputs fit ``max_payload`` before it is published (see the module docstring)."""

    def __init__(self, jetstream: Callable[[], JetStreamContext]):
        self.jetstream = jetstream  # asked on every attempt: the hub may replace its connection meanwhile

    async def fit(self, messages: Sequence[Message], max_payload: int) -> Sequence[Message]:
        """``messages``, each within ``max_payload``; the same ids and order, so it is safe to call again for
        a re-publication. Keeping an original in the object store is retried until it is stored."""
        if all(wire_size(message) <= max_payload for message in messages):
            return messages
        return [
            message if wire_size(message) <= max_payload else await self._fitted(message, max_payload)
            for message in messages
        ]

    async def _fitted(self, message: Message, max_payload: int) -> Message:
        if topology.stream_of(message.subject) == topology.DLQ_STREAM:
            return await self._by_reference(message, max_payload)
        headers = wire_size(message) - len(message.data)
        shorter = trimming.trimmed(message.data, max_payload - headers)
        if shorter is not None:
            log.warning(
                "%s: %d bytes over max_payload %d; published trimmed to %d bytes",
                message.msg_id,
                wire_size(message) - max_payload,
                max_payload,
                len(shorter),
            )
            return dataclasses.replace(message, data=shorter)
        return await self._by_reference(_dead_letter(message, max_payload), max_payload)

    async def _by_reference(self, message: Message, max_payload: int) -> Message:
        """The dead letter with its original bytes in the object store, named by its message id."""
        reference = await self._keep_until_stored(message.msg_id, message.data, max_payload)
        log.warning(
            "%s: dead letter of %d bytes does not fit max_payload %d; original kept in %s",
            message.msg_id,
            len(message.data),
            max_payload,
            reference,
        )
        headers = {
            **(message.headers or {}),
            topology.HEADER_ORIGINAL_OBJECT: reference,
            topology.HEADER_ORIGINAL_SIZE: str(len(message.data)),
        }
        return dataclasses.replace(message, data=b"", headers=headers)

    async def _keep_until_stored(self, name: str, data: bytes, max_payload: int) -> str:
        attempt = 0
        while True:
            try:
                return await self._keep(name, data, max_payload)
            except Exception as exc:  # NATS away or JetStream not answering: like publishing, retried
                attempt += 1
                log.warning(
                    "keeping %s in %s failed (%s: %s); retry %d",
                    name,
                    ORIGINALS_BUCKET,
                    type(exc).__name__,
                    exc,
                    attempt,
                )
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))

    async def _keep(self, name: str, data: bytes, max_payload: int) -> str:
        originals = await self.jetstream().create_object_store(ORIGINALS_BUCKET)
        if not await self._holds(originals, name, data):
            await originals.put(name, data, meta=object_meta(name, max_payload))
        return f"{ORIGINALS_BUCKET}/{name}"

    @staticmethod
    async def _holds(store: ObjectStore, name: str, data: bytes) -> bool:
        """True when ``store`` already has ``name`` with exactly ``data`` (a re-publication after a crash)."""
        try:
            info = await store.get_info(name)
        except (NotFoundError, ObjectNotFoundError):
            return False
        return info.size == len(data) and info.digest == _digest(data)


def _digest(data: bytes) -> str:
    """The object store's digest notation: ``SHA-256=<base64url>``."""
    return OBJ_DIGEST_TEMPLATE.format(digest=base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode())


def _dead_letter(message: Message, max_payload: int) -> Message:
    """An output that cannot be trimmed to fit, as a dead letter of kind ``oversized``."""
    headers = {
        **wire.dead_letter_headers(f"dlq:{message.msg_id}", wire.HUB_SOURCE),
        topology.HEADER_REASON: f"output of {len(message.data)} bytes does not fit max_payload {max_payload} even "
        "with every optional field left out",
        topology.HEADER_REASON_KIND: "oversized",
        topology.HEADER_ORIGINAL_SUBJECT: message.subject,
    }
    return dataclasses.replace(
        message, subject=topology.dlq_subject(OVERSIZED_SOURCE), msg_id=f"dlq:{message.msg_id}", headers=headers
    )
