"""Control characters in text that came from outside: found, to refuse them where they have no business (ids,
names in a URL path), and escaped, so that a log shows them instead of acting on them — a CR or LF inside a
value cannot start a forged log line, nor an ESC recolour a terminal.

"Control character" here is every C0 and C1 code point, DEL, and the Unicode line and paragraph separators:
everything ``str.splitlines`` breaks on, and everything a terminal may act on.
"""

from __future__ import annotations

import re
from collections.abc import Callable

CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escaped(text: str, keep: str = "") -> str:
    """``text`` with each control character not in ``keep`` written as its Python escape (``\\r``, ``\\n``,
    ``\\x1b``, ``\\u2028``); every other character, backslashes included, is unchanged."""
    return CONTROL_CHARACTER.sub(lambda found: _escape(found.group(), keep), text)


def _escape(character: str, keep: str) -> str:
    return character if character in keep else character.encode("unicode_escape").decode("ascii")


def refuse_control_characters(what: str) -> Callable[[str], str]:
    """A pydantic ``AfterValidator`` that refuses a value holding a control character, naming ``what`` it is,
    the character and its position."""

    def check(value: str) -> str:
        found = CONTROL_CHARACTER.search(value)
        if found is not None:
            raise ValueError(
                f"{what} contains the control character U+{ord(found.group()):04X} at position "
                f"{found.start()}; control characters are never part of one"
            )
        return value

    return check
