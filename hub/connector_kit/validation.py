"""Validation errors in the sender's words, one wording across the connectors, so senders and the DLQ read the
same shape: the sender's field names (not the hub's), and the DLQ kind the pipeline would give the problem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from hub.errors import InvalidEventError, validation_kind, validation_problems
from hub.models import Event


def describe(error: ValidationError, whole: str = "body", fields: Mapping[str, str] | None = None) -> str:
    """A validation error as one line a sender can act on: ``field.path: problem; ...``. ``fields`` maps the
    validated model's field names to the sender's (``{"time": "ts"}``) where they differ; a problem of the
    input as a whole (empty location) is named ``whole``."""
    return "; ".join(f"{where}: {message}" for where, message in validation_problems(error, whole, fields))


error_kind = validation_kind  # the DLQ kind of a validation error, as the pipeline names it


def event_from(fields: Mapping[str, str], /, *, what: str = "", **values: Any) -> Event:
    """The canonical event of ``values``; when it does not validate, :class:`InvalidEventError` (with its
    ``kind``) whose reason names the sender's fields: ``fields`` maps event fields to them
    (``{"time": "ts", "text": "description"}``), so a sender never reads the hub's internal names. ``what``
    (e.g. ``"request 42"``) starts the reason."""
    try:
        return Event(**values)
    except ValidationError as error:
        reason = describe(error, "event", fields)
        raise InvalidEventError(f"{what}: {reason}" if what else reason, error_kind(error)) from None
