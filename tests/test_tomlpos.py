"""The key-to-line locator against an oracle: random documents written by a small TOML writer that records
the line of every key it writes (nested tables, quoted keys, multi-line arrays and strings). Arrays of tables
and inline tables are checked in test_config.py."""

from __future__ import annotations

import json
import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.tomlpos import key_lines

KEYS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
    st.text(alphabet="网格街道 .=#\"'", min_size=1, max_size=6),  # needs quoting: dots, spaces, quotes
)
SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
)


def quoted_key(key: str) -> str:
    return key if key.replace("_", "").isalnum() and key.isascii() else json.dumps(key, ensure_ascii=False)


class Writer:
    """Writes TOML line by line and remembers the line of every key path."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.expected: dict[tuple, int] = {}

    def emit(self, text: str, path: tuple | None = None) -> None:
        self.lines.append(text)
        if path is not None:
            self.expected[path] = len(self.lines)

    def value(self, value, path: tuple, inline_key: str) -> None:
        if isinstance(value, list):  # a multi-line array, one element per line
            self.emit(f"{inline_key} = [", path)
            for index, item in enumerate(value):
                self.emit(f"  {json.dumps(item, ensure_ascii=False)},", path + (index,))
            self.emit("]")
        elif isinstance(value, str) and len(value) % 3 == 0:  # some strings as multi-line literals
            self.emit(f'{inline_key} = """', path)
            self.emit(json.dumps(value, ensure_ascii=False)[1:-1].replace('"""', '""\\"') + '"""')
        else:
            self.emit(f"{inline_key} = {json.dumps(value, ensure_ascii=False)}", path)

    def table(self, body: dict, path: tuple) -> None:
        for key, value in body.items():
            if not isinstance(value, dict):
                self.value(value, path + (key,), quoted_key(key))
        for key, value in body.items():
            if isinstance(value, dict):
                self.emit("")
                self.emit(f"[{'.'.join(quoted_key(part) for part in path + (key,))}]", path + (key,))
                self.table(value, path + (key,))


TABLES = st.recursive(
    st.dictionaries(KEYS, st.one_of(SCALARS, st.lists(st.integers(), max_size=3)), max_size=4),
    lambda children: st.dictionaries(KEYS, children, min_size=1, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(document=st.dictionaries(KEYS, TABLES, max_size=4))
def test_every_written_key_is_found_on_its_line(document):
    writer = Writer()
    writer.table(document, ())
    text = "\n".join(writer.lines) + "\n"
    assert tomllib.loads(text) == document  # the writer wrote what it meant to
    found = key_lines(text)
    assert {path: found.get(path) for path in writer.expected} == writer.expected
