"""Docs that cannot drift: every hook documented with its arguments, and every hook exercised by a built-in."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from hub import hookspecs
from hub.plugins import build_plugin_host

REPO = Path(__file__).resolve().parents[1]
HOOKS = {
    name: function
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "cityhub_spec")
}
DOCUMENTED = dict(re.findall(r"^### (\w+)\(([^)]*)\)$", (REPO / "docs" / "plugin_hooks.md").read_text(), re.M))
CONNECTOR_HOOKS = {"register_connectors", "register_simulators"}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_documented_with_its_arguments(hook):
    assert hook in DOCUMENTED, f"docs/plugin_hooks.md has no '### {hook}(...)' section"
    spec_arguments = list(inspect.signature(HOOKS[hook]).parameters)
    assert [arg.strip() for arg in DOCUMENTED[hook].split(",") if arg.strip()] == spec_arguments


def test_no_documented_hook_is_missing_from_the_specs():
    assert set(DOCUMENTED) <= set(HOOKS)


@pytest.fixture(scope="module")
def builtin_hooks() -> dict[str, list[str]]:
    host = build_plugin_host()
    return {hook: [name for name in host.names() if hook in host.state(name).hooks] for hook in HOOKS}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_hook_is_implemented_by_a_builtin_plugin(hook, builtin_hooks):
    if hook in CONNECTOR_HOOKS and not (REPO / "connectors").is_dir():
        pytest.skip("the built-in connectors (connectors/) are not in this checkout")
    assert builtin_hooks[hook], f"no built-in plugin implements {hook}: add one, with a test"
