"""One error root for CityHub. Each subclass also inherits the builtin it behaves like, so callers that
only know Python's builtins still catch it (``except ValueError`` catches a :class:`ConfigError`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class HubError(Exception):
    """Root of every error CityHub raises on purpose."""


class ConfigError(HubError, ValueError):
    """A configuration file or section is invalid. ``issues`` holds every problem found, each with
    file, line and key, so ``cityhub validate`` can report them all at once."""

    def __init__(self, message: str, issues: list[ConfigIssue] | None = None):
        super().__init__(message)
        self.issues = issues or []


class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    __slots__ = ("file", "line", "key", "message")

    def __init__(self, file: str, line: int | None, key: str, message: str):
        self.file, self.line, self.key, self.message = file, line, key, message

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"

    def __repr__(self) -> str:
        return f"ConfigIssue({str(self)!r})"


class InvalidEventError(HubError, ValueError):
    """An incoming message cannot become a canonical event; ``reason`` and ``kind`` go to the DLQ headers
    (``CityHub-Reason``, ``CityHub-Reason-Kind``)."""

    def __init__(self, reason: str, kind: str = "invalid"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class GeoError(HubError, ValueError):
    """Polygons or coordinates the geofence cannot use (broken GeoJSON, NaN, out of range)."""


class RuleError(HubError, ValueError):
    """A rule that does not compile; the message names the rule id, the position and the reason.
    ``problems`` lists every problem found as ``(rule_id, position, reason)``."""

    def __init__(self, message: str, problems: list[tuple[str, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


class PluginError(HubError, RuntimeError):
    """A plugin raised, hung past its timeout, or is disabled after repeated failures."""


class NatsConnectError(HubError, ConnectionError):
    """The hub's first connection to NATS failed: a server rejected the credentials or the TLS handshake, or
    none answered within ``nats.initial_connect_wait``. The message names the servers (redacted) and the
    setting to check, never a secret."""


class DeliveryError(HubError, ConnectionError):
    """An outbound item did not reach its external system (down, slow, 5xx); raised from
    ``Connector.deliver`` so JetStream redelivers it later with backoff."""


class DeliveryRejected(HubError, ValueError):
    """The external system refused an outbound item for good (a 4xx answer); the runtime moves it to the DLQ
    with this message instead of redelivering bytes that will be refused again."""


class SnapshotError(HubError, ValueError):
    """Bytes given to a ``restore`` are not a snapshot of that component, are corrupted, or a delta does not
    follow the state it is applied to."""


# --- pydantic's validation errors in CityHub's words ------------------------------------------------------


def validation_problems(
    error: ValidationError, whole: str, fields: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Each problem of a validation error as ``(where, message)``: ``where`` is the dotted location, its first
    key renamed through ``fields`` (the model's field names to the sender's, ``{"time": "ts"}``), or ``whole``
    for a problem of the input as a whole."""
    problems = []
    for problem in error.errors(include_url=False):
        first, *rest = problem["loc"] or (None,)
        where = whole if first is None else ".".join([(fields or {}).get(str(first), str(first)), *map(str, rest)])
        problems.append((where, problem["msg"]))
    return problems


_KIND_OF_FIELD = {"category": "unknown_category", "location": "coordinates"}


def validation_kind(error: ValidationError) -> str:
    """The DLQ kind (``CityHub-Reason-Kind``) of an event's validation error, named after its first problem:
    ``missing_field``, ``unknown_category``, ``coordinates`` or ``invalid``."""
    first = error.errors(include_url=False)[0]
    if first["type"] == "missing":
        return "missing_field"
    field = str(first["loc"][0]) if first["loc"] else ""
    return _KIND_OF_FIELD.get(field, "invalid")
