"""Prometheus metrics of one hub, on its own registry (never the process-global one, so two hubs in one
process — tests, embedded use — keep separate counts).

Each method below is the one place that both moves a counter and writes the matching log line, so the
numbers on ``/metrics`` and the log always tell the same story.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The hub's counters. Stage names are the pipeline's (decode, dedup, geo, rules, merge, transforms,
    encode, publish, pipeline for a whole batch, end_to_end per event); DLQ ``kind`` is a short, bounded
    reason class (not_json, invalid, oversized, ...)."""

    def __init__(self, log: logging.Logger | None = None):
        self.log = log or logging.getLogger("cityhub.metrics")
        self.registry = CollectorRegistry()
        self._collectors: set[Collector] = set()
        self._stage_events = Counter(
            "cityhub_stage_events",
            "Events through each pipeline stage, by outcome (in, out, dlq, merged).",
            ["stage", "outcome"],
            registry=self.registry,
        )
        self._stage_latency = Histogram(
            "cityhub_stage_latency_seconds",
            "Seconds one batch spends in each stage (end_to_end: per event, ingest to unified stream).",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._dead_letters = Counter(
            "cityhub_dlq_messages",
            "Messages sent to the DLQ, by source and reason class.",
            ["source", "kind"],
            registry=self.registry,
        )
        self._plugin_calls = Counter(
            "cityhub_plugin_calls",
            "Hook and transform calls per plugin, by outcome (ok, error, timeout).",
            ["plugin", "hook", "outcome"],
            registry=self.registry,
        )
        self._plugin_enabled = Gauge(
            "cityhub_plugin_enabled",
            "1 while a plugin is enabled, 0 while disabled.",
            ["plugin"],
            registry=self.registry,
        )
        self._current_role: str | None = None
        self._role = Gauge(
            "cityhub_role",
            "1 for this hub's current role (standby, activating, active, stepping down), 0 for the others.",
            ["role"],
            registry=self.registry,
        )
        self._connector_counts = Counter(
            "cityhub_connector_events",
            "Connector-specific counts (ctx.count).",
            ["source", "name"],
            registry=self.registry,
        )

    # --- pipeline ------------------------------------------------------------------------------

    def stage_batch(self, stage: str, received: int, emitted: int, seconds: float) -> None:
        """One batch went through ``stage``: ``received`` events in, ``emitted`` out, in ``seconds``."""
        self._stage_events.labels(stage, "in").inc(received)
        self._stage_events.labels(stage, "out").inc(emitted)
        self._stage_latency.labels(stage).observe(seconds)
        self.log.debug("stage %s: %d in, %d out, %.2f ms", stage, received, emitted, seconds * 1000)

    def latency(self, stage: str, seconds: Iterable[float]) -> None:
        """Per-event latencies of ``stage`` (e.g. end_to_end: ingest publish time to unified publish)."""
        histogram = self._stage_latency.labels(stage)
        for value in seconds:
            histogram.observe(value)

    def merged(self, count: int) -> None:
        """``count`` events joined an existing incident instead of opening one."""
        self._stage_events.labels("merge", "merged").inc(count)
        self.log.debug("merged %d events into open incidents", count)

    def dead_letter(self, source: str, kind: str, reason: str, stage: str = "decode") -> None:
        """A message from ``source`` was rejected to ``cityhub.dlq.<source>``."""
        self._dead_letters.labels(source, kind).inc()
        self._stage_events.labels(stage, "dlq").inc()
        self.log.warning("rejected to DLQ: source=%s kind=%s reason=%s", source, kind, reason)

    # --- plugins and connectors ----------------------------------------------------------------

    def plugin_call(self, plugin: str, hook: str, outcome: str, error: str | None = None) -> None:
        """One call of ``plugin``'s ``hook`` (or transform) ended with ``outcome``: ok, error or timeout."""
        self._plugin_calls.labels(plugin, hook, outcome).inc()
        if outcome == "ok":
            self.log.debug("plugin %s: %s ok", plugin, hook)
        else:
            self.log.warning("plugin %s: %s failed (%s): %s", plugin, hook, outcome, error)

    def plugin_state(self, plugin: str, enabled: bool, reason: str) -> None:
        """``plugin`` was enabled or disabled, and why (config, admin, failures)."""
        self._plugin_enabled.labels(plugin).set(1 if enabled else 0)
        level = logging.WARNING if reason == "failures" else logging.INFO
        self.log.log(level, "plugin %s %s (%s)", plugin, "enabled" if enabled else "disabled", reason)

    def connector_count(self, source: str, name: str, amount: int = 1) -> None:
        """A connector-specific count (``ConnectorContext.count``)."""
        self._connector_counts.labels(source, name).inc(amount)

    # --- active and standby -----------------------------------------------------------------------

    def role(self, role: str) -> None:
        """This hub's role in the election (hub.availability)."""
        if self._current_role is not None:
            self._role.labels(self._current_role).set(0)
        self._role.labels(role).set(1)
        self._current_role = role

    # --- exposition ----------------------------------------------------------------------------

    def add_collector(self, collector: Collector) -> None:
        """Expose a plugin's own collector (``register_metrics`` hook) on ``/metrics``; adding the same
        collector again (a second admin app on the same hub) changes nothing."""
        if collector not in self._collectors:
            self.registry.register(collector)
            self._collectors.add(collector)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric on this hub's registry."""
        return generate_latest(self.registry)
