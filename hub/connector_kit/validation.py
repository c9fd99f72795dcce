"""One wording for pydantic validation errors across the connectors, so senders and the DLQ read the same shape."""

from __future__ import annotations

from pydantic import ValidationError


def describe(error: ValidationError, whole: str = "body") -> str:
    """A validation error as one line a sender can act on: ``field.path: problem; ...``; a problem of the
    input as a whole (empty location) is named ``whole``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or whole}: {problem['msg']}" for problem in error.errors()
    )
