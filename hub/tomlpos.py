"""Where each key of a TOML document is written: a small structural scanner that maps key paths to line
numbers, so configuration errors can name the line. It runs only on text ``tomllib`` has already parsed, so it
follows the grammar loosely (strings, arrays, inline tables, tables and arrays of tables) and never validates.

Paths use the same shape as pydantic error locations: table and key names as strings, array indexes as ints
(``("rules", 2, "condition")`` is the ``condition`` of the third ``[[rules]]`` table).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

KeyPath = tuple[str | int, ...]

_BARE_KEY_END = " \t=.]\n\r#,}"
_SCALAR_END = ",]}\n\r#"


def _unescape(value: str) -> str:
    """Basic-string escapes of a quoted key (TOML's are JSON's plus \\U and \\e, rare in keys)."""
    try:
        return json.loads(f'"{value}"')
    except ValueError:
        return value


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1
        self.lines: dict[KeyPath, int] = {}
        self.aot_counts: dict[KeyPath, int] = {}

    # --- characters ---------------------------------------------------------------------------

    def peek(self, length: int = 1) -> str:
        return self.text[self.pos : self.pos + length]

    def advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self.pos < len(self.text):
                if self.text[self.pos] == "\n":
                    self.line += 1
                self.pos += 1

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces and comments, and newlines too when ``newlines``."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.advance()
            elif char == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.advance()
            else:
                return

    def record(self, path: KeyPath) -> None:
        for end in range(1, len(path) + 1):
            self.lines.setdefault(path[:end], self.line)

    # --- keys ---------------------------------------------------------------------------------

    def read_string(self) -> str:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            self.advance(3)
            start = self.pos
            while self.pos < len(self.text) and self.peek(3) != quote * 3:
                self.advance(2 if quote == '"' and self.peek() == "\\" else 1)
            value = self.text[start : self.pos]
            self.advance(3)
            while self.peek() == quote:  # up to two quotes may close the content
                self.advance()
            return value
        self.advance()
        start = self.pos
        while self.pos < len(self.text) and self.peek() != quote:
            self.advance(2 if quote == '"' and self.peek() == "\\" else 1)
        value = self.text[start : self.pos]
        self.advance()
        return _unescape(value) if quote == '"' and "\\" in value else value

    def read_key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            if self.peek() in ('"', "'"):
                parts.append(self.read_string())
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] not in _BARE_KEY_END:
                    self.advance()
                parts.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.advance()

    # --- values -------------------------------------------------------------------------------

    def read_value(self, path: KeyPath) -> None:
        char = self.peek()
        if char in ('"', "'"):
            self.read_string()
        elif char == "[":
            self.read_array(path)
        elif char == "{":
            self.read_inline_table(path)
        else:
            while self.pos < len(self.text) and self.text[self.pos] not in _SCALAR_END:
                self.advance()

    def read_array(self, path: KeyPath) -> None:
        self.advance()
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("]", ""):
                self.advance()
                return
            self.record(path + (index,))
            self.read_value(path + (index,))
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.advance()
                index += 1

    def read_inline_table(self, path: KeyPath) -> None:
        self.advance()
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("}", ""):
                self.advance()
                return
            if self.peek() == ",":
                self.advance()
                continue
            self.read_key_value(path)

    def read_key_value(self, table: KeyPath) -> None:
        key_path = table + tuple(self.read_key())
        self.record(key_path)
        self.skip_blank(newlines=False)
        if self.peek() == "=":
            self.advance()
            self.skip_blank(newlines=False)
            self.read_value(key_path)

    # --- tables -------------------------------------------------------------------------------

    def resolve(self, parts: Sequence[str], array_of_tables: bool) -> KeyPath:
        """The path of a table header; earlier arrays of tables resolve to their latest element."""
        resolved: KeyPath = ()
        for position, part in enumerate(parts):
            resolved += (part,)
            is_last = position == len(parts) - 1
            if is_last and array_of_tables:
                count = self.aot_counts.get(resolved, 0)
                self.aot_counts[resolved] = count + 1
                self.record(resolved)
                resolved += (count,)
            elif resolved in self.aot_counts:
                resolved += (self.aot_counts[resolved] - 1,)
        return resolved

    def read_header(self) -> KeyPath:
        array_of_tables = self.peek(2) == "[["
        self.advance(2 if array_of_tables else 1)
        table = self.resolve(self.read_key(), array_of_tables)
        self.record(table)
        self.advance(2 if array_of_tables else 1)
        return table

    def scan(self) -> dict[KeyPath, int]:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            if self.peek() == "[":
                table = self.read_header()
            else:
                self.read_key_value(table)


def key_lines(text: str) -> dict[KeyPath, int]:
    """Map every table, key and array element written in ``text`` (valid TOML) to its line (1-based)."""
    return _Scanner(text).scan()


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of its nearest written ancestor (a missing key points at its table)."""
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return None
