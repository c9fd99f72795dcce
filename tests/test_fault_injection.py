"""The outside world at its worst (issue 10, "What it must show"): a valid load over three sources with every
kind of adversarial input interleaved (tests/fault_load.py names each one and the DLQ kind it must get),
sent to a hub running as ``cityhub run`` that is killed with SIGKILL and started again mid-stream, over a
nats-server that is restarted mid-stream; then early events are sent again after the ingest duplicate window.

The scenario runs once (tests/fault_run.py); each test below checks one promise of docs/runtime.md on what
it left in the streams and what the admin API answered, and says which inputs broke it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TypeVar

import pytest
from nats.js.api import PubAck

from tests.fault_load import BadInput, Sent
from tests.fault_run import RESEND_S, DlqCopy, FaultOutcome, run_fault_scenario

pytestmark = pytest.mark.slow
SHOWN = 6  # examples per problem in a failure message
SentKind = TypeVar("SentKind", bound=Sent)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> FaultOutcome:
    return run_fault_scenario(tmp_path_factory.mktemp("fault"))


def report(what: str, examples: Sequence[str]) -> str:
    """``<count> <what>: <a few examples>``."""
    count = len(examples)
    more = f"; and {count - SHOWN} more" if count > SHOWN else ""
    return f"{count} {what}: " + "; ".join(examples[:SHOWN]) + more


def by_label(inputs: Sequence[Sent]) -> str:
    return ", ".join(f"{label} x{n}" for label, n in Counter(sent.label for sent in inputs).most_common())


def unprocessed(acks: Mapping[SentKind, PubAck], outcome: FaultOutcome) -> list[SentKind]:
    """The inputs stored in ingest past what the pipeline acknowledged: nothing about them is checked yet."""
    return [sent for sent, ack in acks.items() if not ack.duplicate and ack.seq > outcome.ack_floor]


def failed(problems: list[str], outcome: FaultOutcome) -> str:
    return "\n".join([*problems, outcome.context()])


def copies_of(bad: BadInput, outcome: FaultOutcome) -> list[DlqCopy]:
    """The DLQ copies of ``bad``: its bytes, or (a copy that lost them) bytes that carry its marker."""
    exact = [copy for copy in outcome.dlq if copy.original == bad.data]
    if exact:
        return exact
    marker = bad.marker.encode()
    return [copy for copy in outcome.dlq if marker in (copy.original or b"")]


def shown(data: bytes | None, size: int = 60) -> str:
    return repr((data or b"")[:size])


# --- the unified stream ------------------------------------------------------------------------------


def test_every_valid_event_is_in_the_unified_stream_exactly_once(outcome: FaultOutcome) -> None:
    by_key = outcome.unified_by_key()
    valid = [*outcome.load.valid, outcome.probe]
    missing = [sent for sent in valid if sent.key not in by_key]
    doubled = [sent for sent in valid if len(by_key.get(sent.key, [])) > 1]
    problems = []
    if missing:
        problems.append(
            report(
                f"of {len(valid)} valid events missing from the unified stream ({by_label(missing)})",
                [repr(sent.key) for sent in missing],
            )
        )
    if doubled:
        problems.append(
            report(
                f"valid events in the unified stream more than once ({by_label(doubled)})",
                [f"{sent.key!r} x{len(by_key[sent.key])}" for sent in doubled],
            )
        )
    assert not problems, failed(problems, outcome)


def test_no_adversarial_input_is_accepted_into_the_unified_stream(outcome: FaultOutcome) -> None:
    markers = {bad.marker: bad for bad in outcome.load.bad}
    accepted = [markers[key[1]] for key in outcome.unified_by_key() if key[1] in markers]
    assert not accepted, failed(
        [
            report(
                f"adversarial inputs accepted as events ({by_label(accepted)})",
                [f"{bad.marker} (must be DLQ {'/'.join(sorted(bad.kinds))})" for bad in accepted],
            )
        ],
        outcome,
    )


def test_other_content_under_a_known_id_leaves_the_first_content(outcome: FaultOutcome) -> None:
    by_key = outcome.unified_by_key()
    problems = []
    stored = [shadow for shadow, ack in outcome.shadow_acks.items() if shadow.same_msg_id and not ack.duplicate]
    if stored:
        problems.append(
            report(
                "re-sends with the same Nats-Msg-Id that JetStream stored (not dropped as duplicates)",
                [repr(shadow.key) for shadow in stored],
            )
        )
    waiting = unprocessed(outcome.shadow_acks, outcome)
    if waiting:
        problems.append(
            report(
                f"ids sent again with other content the pipeline never processed (its ack floor is "
                f"{outcome.ack_floor})",
                [repr(sent.key) for sent in waiting],
            )
        )
    variants = {
        shadow.key: [variant(envelope) for envelope in by_key.get(shadow.key, [])] for shadow in outcome.load.shadows
    }
    wrong = [f"{key!r}: {found}" for key, found in variants.items() if found != ["original"]]
    if wrong:
        problems.append(
            report(
                "ids sent again with other content whose unified copies are not the first content, "
                "once (payload variants found)",
                wrong,
            )
        )
    assert not problems, failed(problems, outcome)


def variant(envelope: dict) -> str | None:
    return envelope["data"].get("payload", {}).get("variant")


def test_early_events_sent_again_after_the_duplicate_window_are_dropped(outcome: FaultOutcome) -> None:
    """By the pipeline's dedup: the unified stream alone would not show it within the events stream's own
    duplicate window, which drops the outputs of a re-processed event as re-publications."""
    by_key = outcome.unified_by_key()
    stored = [sent for sent, ack in outcome.resend_acks.items() if not ack.duplicate]
    problems = []
    if len(stored) < len(outcome.resend_acks):
        problems.append(
            report(
                f"re-sends JetStream still dropped as duplicates {RESEND_S} s after the duplicate "
                "window: they never reached the pipeline's dedup",
                [repr(sent.key) for sent in outcome.resend_acks if sent not in stored],
            )
        )
    waiting = unprocessed(outcome.resend_acks, outcome)
    if waiting:
        problems.append(
            report(
                f"of {len(stored)} re-sent early events the pipeline never processed (its ack floor "
                f"is {outcome.ack_floor}): its dedup is untested with them",
                [repr(sent.key) for sent in waiting],
            )
        )
    elif outcome.resends_dropped != len(stored):
        problems.append(
            f"the pipeline's dedup dropped {outcome.resends_dropped} of the {len(stored)} early events "
            "re-sent after the duplicate window (its duplicates count in /health); the others were "
            "processed as new events"
        )
    doubled = [f"{sent.key!r} x{len(by_key[sent.key])}" for sent in stored if len(by_key.get(sent.key, [])) > 1]
    if doubled:
        problems.append(report("re-sent early events in the unified stream more than once", doubled))
    assert not problems, failed(problems, outcome)


# --- the DLQ -----------------------------------------------------------------------------------------


def test_every_rejected_input_is_in_the_dlq_exactly_once(outcome: FaultOutcome) -> None:
    accepted = {key[1] for key in outcome.unified_by_key()}
    absent = [bad for bad in outcome.load.bad if not copies_of(bad, outcome)]
    doubled = [bad for bad in outcome.load.bad if len(copies_of(bad, outcome)) > 1]
    problems = []
    if absent:
        problems.append(
            report(
                f"of {len(outcome.load.bad)} rejected inputs not in the DLQ ({by_label(absent)})",
                [f"{bad.marker} ({'accepted as an event' if bad.marker in accepted else 'nowhere'})" for bad in absent],
            )
        )
    if doubled:
        problems.append(
            report(
                f"rejected inputs in the DLQ more than once ({by_label(doubled)})",
                [f"{bad.marker} x{len(copies_of(bad, outcome))}" for bad in doubled],
            )
        )
    assert not problems, failed(problems, outcome)


def test_each_dlq_copy_has_its_kind_and_a_reason(outcome: FaultOutcome) -> None:
    wrong_kind, no_reason, unnamed_field = [], [], []
    for bad in outcome.load.bad:
        for copy in copies_of(bad, outcome):
            if copy.kind not in bad.kinds:
                wrong_kind.append(
                    f"{bad.marker}: {copy.kind!r}, expected {'/'.join(sorted(bad.kinds))} (reason {copy.reason!r})"
                )
            if not copy.reason:
                no_reason.append(bad.marker)
            elif bad.names_field and bad.names_field not in copy.reason:
                unnamed_field.append(f"{bad.marker}: {copy.reason!r} does not name {bad.names_field!r}")
    problems = []
    if wrong_kind:
        problems.append(report("DLQ copies with the wrong CityHub-Reason-Kind", wrong_kind))
    if no_reason:
        problems.append(report("DLQ copies without a CityHub-Reason", no_reason))
    if unnamed_field:
        problems.append(report("missing_field reasons that do not name the field", unnamed_field))
    assert not problems, failed(problems, outcome)


def test_each_dlq_copy_keeps_the_original_bytes(outcome: FaultOutcome) -> None:
    """Inline, or, for a copy whose original and headers exceed max_payload, in the object that the
    CityHub-Original-Object header names."""
    altered = []
    for bad in outcome.load.bad:
        for copy in copies_of(bad, outcome):
            if copy.original != bad.data:
                where = f"object {copy.object_ref} ({copy.object_problem})" if copy.object_ref else "inline"
                altered.append(
                    f"{bad.marker}: {len(bad.data)} bytes sent, {where} holds "
                    f"{len(copy.original or b'')} bytes {shown(copy.original)}"
                )
    unreadable = [f"{copy.object_ref}: {copy.object_problem}" for copy in outcome.dlq if copy.object_problem]
    problems = []
    if altered:
        problems.append(report("DLQ copies that lost the original bytes", altered))
    if unreadable:
        problems.append(report("CityHub-Original-Object references that do not resolve", unreadable))
    assert not problems, failed(problems, outcome)


def test_nothing_but_the_rejected_inputs_is_in_the_dlq(outcome: FaultOutcome) -> None:
    theirs = {id(copy) for bad in outcome.load.bad for copy in copies_of(bad, outcome)}
    others = [copy for copy in outcome.dlq if id(copy) not in theirs]
    examples = [f"{copy.kind}: {copy.reason!r} {shown(copy.original)}" for copy in others]
    assert not others, failed(
        [report("DLQ messages that are no rejected input (valid events, shadows, or bytes not sent)", examples)],
        outcome,
    )


def test_a_publish_over_max_payload_closes_only_its_own_connection(outcome: FaultOutcome) -> None:
    sent = outcome.over_limit
    assert sent is not None, failed(["the over-limit publish was never made"], outcome)
    marker = b"bad-over_max_payload-0"  # in its Nats-Msg-Id
    problems = [
        problem
        for broken, problem in [
            (not sent.client_refused, "nats-py published a message over max_payload instead of refusing it"),
            (
                b"maximum payload" not in sent.server_reply.lower(),
                f"the server answered the raw over-limit HPUB with {shown(sent.server_reply, 120)}, "
                "not a max payload error",
            ),
            (not sent.raw_connection_closed, "the server kept the raw connection that sent it open"),
            (not sent.publisher_connected_after, "the publisher's own connection was lost too"),
            (any(marker in (copy.original or b"") for copy in outcome.dlq), "it reached the DLQ"),
        ]
        if broken
    ]
    assert not problems, failed(problems, outcome)


# --- incidents, health, dashboard, shutdown -----------------------------------------------------------


def test_no_incident_is_opened_twice(outcome: FaultOutcome) -> None:
    twice = {incident: count for incident, count in outcome.opened.items() if count > 1}
    assert not twice, failed(
        [
            report(
                f"of {len(outcome.opened)} incidents opened more than once",
                [f"{incident} x{count}" for incident, count in twice.items()],
            )
        ],
        outcome,
    )


def test_the_pipeline_runs_and_the_hub_is_ready_at_the_end(outcome: FaultOutcome) -> None:
    runtime = (outcome.health or {}).get("runtime") or {}
    pipeline, connection = runtime.get("pipeline") or {}, runtime.get("nats") or {}
    problems = [
        problem
        for broken, problem in [
            (outcome.ready_status != 200, f"/ready answered {outcome.ready_status}"),
            (
                pipeline.get("running") is not True,
                f"/health says the pipeline is not running: {pipeline or outcome.health}",
            ),
            (connection.get("connected") is not True, f"/health says the hub is not connected to NATS: {connection}"),
        ]
        if broken
    ]
    assert not problems, failed(problems, outcome)


def test_the_dashboard_shows_an_incident_opened_at_the_end(outcome: FaultOutcome) -> None:
    assert outcome.probe_incident is not None, failed(
        [f"the probe event {outcome.probe.key!r} sent at the end never reached the unified stream"], outcome
    )
    assert outcome.dashboard_status == 200, failed(
        [f"/api/incidents/{outcome.probe_incident} answered {outcome.dashboard_status} (the dashboard is not current)"],
        outcome,
    )


def test_the_hub_stops_cleanly_at_the_end(outcome: FaultOutcome) -> None:
    answer = "no exit within 30 s" if outcome.hub_exit is None else f"exit code {outcome.hub_exit}"
    assert outcome.hub_exit == 0, failed([f"cityhub run answered SIGTERM with {answer}"], outcome)
