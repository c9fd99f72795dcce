"""``cityhub new-connector NAME [--dir PATH]``: a standalone, pip-installable connector package, ready to adapt.

It writes, under ``PATH`` (default ``./NAME``), the files of ``template/`` with the name filled in:
``pyproject.toml`` (distribution ``cityhub-NAME``, entry point in ``cityhub.plugins``), ``src/cityhub_NAME/``
(``__init__.py`` with the hooks, ``settings.py`` with an authentication option, ``connector.py``,
``simulator.py``, ``demo.toml``), ``tests/test_NAME.py`` (using the fixtures of cityhub's pytest plugin) and
``docs/NAME.md`` (which names every setting, as the docs check wants). The generated connector is a webhook
intake (the most common shape of a vendor integration): the external system POSTs JSON alarms, signed when a
secret is set; the connector maps them to canonical events and sends what it cannot use to the DLQ; the
simulator is a real HTTP client playing the external system. ``pip install -e PATH`` and its tests pass.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from hub.errors import HubError

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,40}$")
TEMPLATE = files(__package__) / "template"
TEMPLATE_SUFFIX = ".tmpl"
PLACEHOLDER = "NAME"  # in template paths
DEMO_PORT = 18900  # the demo moves every 18xxx port to a free one


def _template_files(folder: Traversable = TEMPLATE, prefix: str = "") -> dict[str, str]:
    found = {}
    for entry in folder.iterdir():
        if entry.is_dir():
            found.update(_template_files(entry, f"{prefix}{entry.name}/"))
        elif entry.name.endswith(TEMPLATE_SUFFIX):
            found[prefix + entry.name.removesuffix(TEMPLATE_SUFFIX)] = entry.read_text(encoding="utf-8")
    return found


def connector_files(name: str, port: int = 8800) -> dict[str, str]:
    """The files of a new connector package ``name``, keyed by their path relative to the package folder."""
    if not _NAME.match(name):
        raise HubError(
            f"connector name {name!r}: use lower-case letters, digits and _ (2-41 characters, a letter first)"
        )
    values = {
        "name": name,
        "dist": name.replace("_", "-"),
        "Class": "".join(part.capitalize() for part in name.split("_")),
        "title": name.replace("_", " ").title(),
        "port": str(port),
        "demo_port": str(DEMO_PORT),
    }
    return {
        path.replace(PLACEHOLDER, name): Template(text).substitute(values) for path, text in _template_files().items()
    }


def write_connector(directory: Path, name: str, port: int = 8800) -> list[Path]:
    """Write the new connector package into ``directory``; refuse to overwrite anything. Returns the files written."""
    files_ = connector_files(name, port)
    existing = [str(directory / path) for path in files_ if (directory / path).exists()]
    if existing:
        raise HubError(f"not overwriting existing files: {', '.join(existing)}; choose another --dir")
    written = []
    for relative, text in sorted(files_.items()):
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
