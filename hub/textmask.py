"""Personal data masked in free text a batch of texts at a time, in the Rust core (``core_rs/src/masking``).

The caller's own Python regular expressions are compiled there (with fancy-regex, so look-behind and look-ahead
work as in Python's ``re``) and run as the redaction plugin runs them: every match of ``run`` (a run of digits,
say) that is one of the ``shapes`` whole is masked as that shape; any other run is searched for the shapes
inside it. A text holding a digit outside 0-9 is left undecided: Python's ``\\d`` follows its own Unicode
version, so the caller masks that one itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

from hub import _core


class TextShape(NamedTuple):
    """A kind of personal data: its name, its pattern (Python syntax) and how a match is hidden: ``middle``
    keeps ``keep_start`` and ``keep_end`` characters, ``stripped_middle`` the same after stripping whitespace,
    ``phone`` 3 and 4 of 11 characters or more, else the last 4."""

    name: str
    pattern: str
    mask: Literal["middle", "stripped_middle", "phone"]
    keep_start: int = 0
    keep_end: int = 0


class TextMasker:
    def __init__(self, run: str, shapes: Sequence[TextShape], mask_char: str):
        self.names = [shape.name for shape in shapes]
        self._masker = _core.TextMasker(run, list(shapes), mask_char)

    def mask_many(self, texts: Sequence[str | None]) -> tuple[list[str | None], dict[str, int], list[int]]:
        """Per text its masked form (None when unchanged or None), the matches masked per shape name, and the
        positions of the texts left undecided (unchanged here)."""
        masked, counts, undecided = self._masker.mask_many(texts)
        return masked, dict(zip(self.names, counts, strict=True)), undecided
