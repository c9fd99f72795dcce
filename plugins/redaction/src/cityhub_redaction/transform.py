"""The redaction transform: the last stage before publishing, so enrichment and rules saw the real data
and the unified stream never does (unless ``[pipeline].personal_data`` says ``keep``)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Mapping

from hub.models import Event
from hub.transforms import Stage
from cityhub_redaction.settings import RedactionSettings

# Mainland mobile numbers (11 digits from 13x-19x), landlines with area code, and 18-character resident
# ID-card numbers (17 digits and a check digit or X), not glued to other digits (a longer digit run is an
# order or account number, not a phone).
MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)")
LANDLINE = re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)")
ID_CARD = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")
# Every place one of them can start: a whole run of digits and dashes (with an optional +86 and X).
_DIGIT_RUN = re.compile(r"(?:\+?86[- ]?)?\d[\d-]{6,}[\dXx]?")


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


_FIELD_MASKS: dict[str, Callable[[str, str], str]] = {
    "reporter.name": mask_name,
    "reporter.phone": mask_phone,
    "reporter.id_card": mask_id_card,
}


_PSEUDONYM_CACHE = 100_000


class Redaction:
    """Applies ``[pipeline].personal_data`` to each event of a batch, in place. Everything that depends
    on the policy is decided once here; per event only the fields that change are touched, and free text is
    scanned once for every pattern together."""

    name = "redaction"
    stage = Stage.REDACT
    order = 0

    def __init__(self, policies: Mapping[str, str], settings: RedactionSettings):
        self.policies = dict(policies)
        self.char = settings.mask_char
        self._key = settings.hash_key.get_secret_value().encode()
        self._pseudonyms: dict[str, str] = {}
        patterns: list[tuple[str, str, Callable[[str], str]]] = [
            ("mobile", MOBILE.pattern, lambda found: mask_phone(found, self.char)),
            ("landline", LANDLINE.pattern, lambda found: mask_middle(found, 4, 2, self.char)),
            ("id_card", ID_CARD.pattern, lambda found: mask_id_card(found, self.char)),
            *(
                (pattern.name, pattern.regex,
                 lambda found, p=pattern: mask_middle(found, p.keep_start, p.keep_end, self.char))
                for pattern in settings.text_patterns
            ),
        ]
        self._extra_patterns = bool(settings.text_patterns)
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
            (name, name, self._operation(name)) for name in ("text", "address")
            if self.policies.get(name, "mask" if name == "text" else "keep") != "keep"
        ]
        self._payload_ops = [
            (field.removeprefix("payload."), field, self._operation(field))
            for field, policy in self.policies.items() if field.startswith("payload.") and policy != "keep"
        ]
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
        payload = event.payload
        for key, field, operation in self._payload_ops:
            if key in payload:
                changed = operation(str(payload[key]))
                counts[field] += 1
                if changed is None:
                    del payload[key]
                else:
                    payload[key] = changed

    def apply(self, events: list[Event]) -> list[Event]:
        for event in events:
            self.redact(event)
        return events
