"""The suite's readiness wait lives in :mod:`hub.testing.waiting` (third-party connector tests use it too)."""

from hub.testing.waiting import holds_within, wait_until

__all__ = ["holds_within", "wait_until"]
