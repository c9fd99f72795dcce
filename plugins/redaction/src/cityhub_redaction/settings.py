"""Settings of the ``redaction`` plugin (``[plugins.redaction]``). Which fields are masked, hashed, dropped or
kept is ``[pipeline].personal_data``; this section tunes how."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class TextPattern(BaseModel):
    """One more kind of personal data to find in free text."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="What it finds (shown in the plugin's counters).")
    regex: str = Field(description="Python regular expression; each match is replaced.")
    keep_start: int = Field(0, ge=0, description="Characters of each match kept at the start.")
    keep_end: int = Field(0, ge=0, description="Characters of each match kept at the end.")

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return regex


class RedactionSettings(BaseModel):
    """Masks personal data in the unified stream: reporter name, phone, ID-card number, and those patterns
    inside free text."""

    model_config = ConfigDict(extra="forbid")

    mask_char: str = Field("*", min_length=1, max_length=1, description="Character that replaces hidden ones.")
    hash_key: SecretStr = Field(
        SecretStr("cityhub-default-pseudonym-key"),
        description="Secret key of the 'hash' policy (HMAC-SHA256), so pseudonyms cannot be reversed by trying "
        'every phone number. Set it from the environment in production: hash_key = "${CITYHUB_HASH_KEY}".',
    )
    text_patterns: list[TextPattern] = Field(
        default_factory=list, description="More patterns masked in free text, besides phone and ID-card numbers."
    )
