"""The redaction transform: the last stage before publishing, so enrichment and rules saw the real data
and the unified stream never does (unless ``[pipeline].personal_data`` says ``keep``)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from hub.models import Event
from hub.transforms import Stage
from plugins.redaction.settings import RedactionSettings

# Mainland mobile numbers (11 digits from 13x-19x), landlines with area code, and 18-character resident
# ID-card numbers (17 digits and a check digit or X), not glued to other digits (a longer digit run is an
# order or account number, not a phone).
MOBILE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d{9}(?!\d)")
LANDLINE = re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)")
ID_CARD = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)")


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


class Redaction:
    """Applies ``[pipeline].personal_data`` to each event of a batch, in place."""

    name = "redaction"
    stage = Stage.REDACT
    order = 0

    def __init__(self, policies: Mapping[str, str], settings: RedactionSettings):
        self.policies = dict(policies)
        self.char = settings.mask_char
        self._key = settings.hash_key.get_secret_value().encode()
        self._text_patterns: list[tuple[str, re.Pattern[str], Callable[[str], str]]] = [
            ("mobile", MOBILE, lambda found: mask_phone(found, self.char)),
            ("landline", LANDLINE, lambda found: mask_middle(found, 4, 2, self.char)),
            ("id_card", ID_CARD, lambda found: mask_id_card(found, self.char)),
            *(
                (pattern.name, re.compile(pattern.regex),
                 lambda found, p=pattern: mask_middle(found, p.keep_start, p.keep_end, self.char))
                for pattern in settings.text_patterns
            ),
        ]
        self.counts: Counter[str] = Counter()

    def pseudonym(self, value: str) -> str:
        """The 'hash' policy: a stable keyed pseudonym, equal for equal values, useless without the key."""
        return "h:" + hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:16]

    def mask_text(self, text: str) -> str:
        for name, pattern, mask in self._text_patterns:
            text, replaced = pattern.subn(lambda match, mask=mask: mask(match.group(0)), text)
            self.counts[f"text.{name}"] += replaced
        return text

    def _apply(self, field: str, value: Any) -> Any:
        """The value ``field`` gets in the unified stream; None means drop it."""
        policy = self.policies.get(field, "mask")
        if value is None or policy == "keep":
            return value
        self.counts[field] += 1
        if policy == "drop":
            return None
        text = value if isinstance(value, str) else str(value)
        if policy == "hash":
            return self.pseudonym(text)
        if field == "text":
            return self.mask_text(text)
        return _FIELD_MASKS.get(field, mask_generic)(text, self.char)

    def redact(self, event: Event) -> None:
        if event.reporter is not None:
            for name in ("name", "phone", "id_card", "account"):
                setattr(event.reporter, name, self._apply(f"reporter.{name}", getattr(event.reporter, name)))
        event.text = self._apply("text", event.text)
        if "address" in self.policies:
            event.address = self._apply("address", event.address)
        for field in self.policies:
            key = field.removeprefix("payload.")
            if field.startswith("payload.") and key in event.payload:
                value = self._apply(field, event.payload[key])
                if value is None:
                    del event.payload[key]
                else:
                    event.payload[key] = value

    def apply(self, events: list[Event]) -> list[Event]:
        for event in events:
            self.redact(event)
        return events
