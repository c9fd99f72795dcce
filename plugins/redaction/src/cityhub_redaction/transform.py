"""The redaction transform: the last stage before publishing, so enrichment and rules saw the real data
and the unified stream never does (unless ``[pipeline].personal_data`` says ``keep``)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from cityhub_redaction.settings import RedactionSettings
from hub.models import Event
from hub.textmask import TextMasker, TextShape
from hub.transforms import Stage

if TYPE_CHECKING:
    from hub.pipeline.columns import EventColumns

# Mainland mobile numbers (11 digits from 13x-19x), landlines with area code, and 18-character resident
# ID-card numbers (17 digits and a check digit or X), not glued to other digits (a longer digit run is an
# order or account number, not a phone).
MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)")
LANDLINE = re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)")
ID_CARD = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
# Every place one of them can start: a whole run of digits and dashes (with an optional +86 and X).
_DIGIT_RUN = re.compile(r"(?:\+?86[- ]?)?\d[\d-]{6,}[\dXx]?")
# The built-in kinds of personal data in free text and how each is masked (mask_phone, mask_middle(4, 2),
# mask_id_card): in the Rust core for a batch of texts (hub.textmask), in Python for one text.
BUILT_IN_SHAPES = (
    TextShape("mobile", MOBILE.pattern, "phone"),
    TextShape("landline", LANDLINE.pattern, "middle", 4, 2),
    TextShape("id_card", ID_CARD.pattern, "stripped_middle", 6, 4),
)


def mask_middle(value: str, keep_start: int, keep_end: int, char: str = "*") -> str:
    """Keep ``keep_start`` and ``keep_end`` characters, hide the rest; short values are hidden whole."""
    if len(value) <= keep_start + keep_end:
        return char * len(value)
    return value[:keep_start] + char * (len(value) - keep_start - keep_end) + value[len(value) - keep_end :]


def mask_phone(value: str, char: str = "*") -> str:
    """138****5678: operators and the last four digits stay, enough to tell two callers apart."""
    digits = value.strip()
    return mask_middle(digits, 3, 4, char) if len(digits) >= 11 else mask_middle(digits, 0, 4, char)


def mask_id_card(value: str, char: str = "*") -> str:
    """510104********1234: region code and last four stay; the birth date goes."""
    return mask_middle(value.strip(), 6, 4, char)


def mask_name(value: str, char: str = "*") -> str:
    """张* / 欧阳** / J*** S****: the first character of each word stays."""
    words = value.split()
    if len(words) > 1:
        return " ".join(mask_middle(word, 1, 0, char) for word in words)
    return mask_middle(value.strip(), 1, 0, char)


def mask_generic(value: str, char: str = "*") -> str:
    """Any other field: the first third stays (an address keeps its district and street)."""
    return mask_middle(value, len(value) // 3, 0, char)


def shape_mask(shape: TextShape, char: str = "*") -> Callable[[str], str]:
    """How a match of ``shape`` is masked, in Python (the Rust core reads the same ``TextShape``)."""
    if shape.mask == "phone":
        return lambda found: mask_phone(found, char)
    if shape.mask == "stripped_middle":
        return lambda found: mask_middle(found.strip(), shape.keep_start, shape.keep_end, char)
    return lambda found: mask_middle(found, shape.keep_start, shape.keep_end, char)


_FIELD_MASKS: dict[str, Callable[[str, str], str]] = {
    "reporter.name": mask_name,
    "reporter.phone": mask_phone,
    "reporter.id_card": mask_id_card,
}


_PSEUDONYM_CACHE = 100_000


class Redaction:
    """Applies ``[pipeline].personal_data`` to each event of a batch, in place: on the pipeline's columns
    (:meth:`apply_columns`) or on :class:`Event` objects (:meth:`apply`). Everything that depends on the policy
    is decided once here; per event only the fields that change are touched, and free text is scanned once for
    every pattern together, in the Rust core when the patterns are the built-in ones."""

    name = "redaction"
    stage = Stage.REDACT
    order = 0

    def __init__(self, policies: Mapping[str, str], settings: RedactionSettings):
        self.policies = dict(policies)
        self.char = settings.mask_char
        self._key = settings.hash_key.get_secret_value().encode()
        self._pseudonyms: dict[str, str] = {}
        shapes = [
            *BUILT_IN_SHAPES,
            *(
                TextShape(pattern.name, pattern.regex, "middle", pattern.keep_start, pattern.keep_end)
                for pattern in settings.text_patterns
            ),
        ]
        patterns = [(shape.name, shape.pattern, shape_mask(shape, self.char)) for shape in shapes]
        self._extra_patterns = bool(settings.text_patterns)
        self._masker = None if self._extra_patterns else TextMasker(_DIGIT_RUN.pattern, BUILT_IN_SHAPES, self.char)
        self._whole_shapes = [(name, re.compile(regex), mask) for name, regex, mask in patterns[:3]]
        self._text_masks = {f"cityhub_p{index}": (name, mask) for index, (name, _, mask) in enumerate(patterns)}
        self._text_pattern = re.compile(
            "|".join(f"(?P<cityhub_p{index}>{regex})" for index, (_, regex, _) in enumerate(patterns))
        )
        self._reporter_ops = [
            (name, f"reporter.{name}", self._operation(f"reporter.{name}"))
            for name in ("name", "phone", "id_card", "account")
            if self.policies.get(f"reporter.{name}", "mask") != "keep"
        ]
        self._event_ops = [
            (name, name, self._operation(name))
            for name in ("text", "address")
            if self.policies.get(name, "mask" if name == "text" else "keep") != "keep"
        ]
        self._payload_ops = [
            (field.removeprefix("payload."), field, self._operation(field))
            for field, policy in self.policies.items()
            if field.startswith("payload.") and policy != "keep"
        ]
        self._payload_keys = [orjson.dumps(key).decode() for key, _, _ in self._payload_ops]
        self.counts: Counter[str] = Counter()

    def _operation(self, field: str) -> Callable[[str], str | None]:
        """What the field's policy does to a value; None means drop it."""
        policy = self.policies.get(field, "mask")
        if policy == "drop":
            return lambda value: None
        if policy == "hash":
            return self.pseudonym
        if field == "text":
            return self.mask_text
        mask, char = _FIELD_MASKS.get(field, mask_generic), self.char
        return lambda value: mask(value, char)

    def pseudonym(self, value: str) -> str:
        """The 'hash' policy: a stable keyed pseudonym, equal for equal values, useless without the key."""
        found = self._pseudonyms.get(value)
        if found is None:
            if len(self._pseudonyms) >= _PSEUDONYM_CACHE:
                self._pseudonyms.clear()
            found = "h:" + hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:16]
            self._pseudonyms[value] = found
        return found

    def _mask_match(self, match: re.Match[str]) -> str:
        name, mask = self._text_masks[match.lastgroup or ""]
        self.counts[f"text.{name}"] += 1
        return mask(match.group(0))

    def mask_text(self, text: str) -> str:
        """Free text with every phone and ID-card number (and configured pattern) masked."""
        if self._extra_patterns:
            return self._text_pattern.sub(self._mask_match, text)
        return _DIGIT_RUN.sub(self._mask_run, text)

    def _mask_run(self, run: re.Match[str]) -> str:
        """One run of digits (most texts have few): the common shapes are recognised whole; anything else
        (a number with an extension, several numbers joined by dashes) goes through the full patterns."""
        found = run.group(0)
        for name, pattern, mask in self._whole_shapes:
            if pattern.fullmatch(found):
                self.counts[f"text.{name}"] += 1
                return mask(found)
        return self._text_pattern.sub(self._mask_match, found)

    def redact(self, event: Event) -> None:
        counts = self.counts
        reporter = event.reporter
        if reporter is not None:
            for name, field, operation in self._reporter_ops:
                value = getattr(reporter, name)
                if value is not None:
                    setattr(reporter, name, operation(value))
                    counts[field] += 1
        for name, field, operation in self._event_ops:
            value = getattr(event, name)
            if value is not None:
                setattr(event, name, operation(value))
                counts[field] += 1
        self._redact_payload(event.payload)

    def _redact_payload(self, payload: dict[str, Any]) -> None:
        for key, field, operation in self._payload_ops:
            if key in payload:
                changed = operation(str(payload[key]))
                self.counts[field] += 1
                if changed is None:
                    del payload[key]
                else:
                    payload[key] = changed

    def apply(self, events: list[Event]) -> list[Event]:
        for event in events:
            self.redact(event)
        return events

    def apply_columns(self, columns: EventColumns) -> None:
        """:meth:`redact` for a batch of events as the pipeline's columns (``reporter.phone``, ``text``,
        ``payload`` as JSON text, ...): each field's column at once, the texts in one call to the core."""
        for _, field, operation in [*self._reporter_ops, *self._event_ops]:
            values = columns[field]
            present = len(values) - values.count(None)
            if not present:
                continue
            self.counts[field] += present
            if operation == self.mask_text:
                columns[field] = self.mask_texts(values)
            else:
                columns[field] = [None if value is None else operation(value) for value in values]
        if self._payload_ops:
            columns["payload"] = [self._redacted_payload_json(payload) for payload in columns["payload"]]

    def mask_texts(self, texts: list[str | None]) -> list[str | None]:
        """:meth:`mask_text` for a batch of texts; the built-in patterns run in the Rust core."""
        if self._masker is None:
            return [None if text is None else self.mask_text(text) for text in texts]
        masked, counts, undecided = self._masker.mask_many(texts)
        for name, count in counts.items():
            if count:
                self.counts[f"text.{name}"] += count
        result = [text if changed is None else changed for text, changed in zip(texts, masked, strict=True)]
        for row in undecided:
            result[row] = self.mask_text(texts[row])  # type: ignore[arg-type]
        return result

    def _redacted_payload_json(self, payload: str) -> str:
        """A payload column's JSON with the payload policies applied (parsed only when it holds one of their
        keys)."""
        if not any(key in payload for key in self._payload_keys):
            return payload
        parsed = orjson.loads(payload)
        self._redact_payload(parsed)
        return orjson.dumps(parsed).decode()
