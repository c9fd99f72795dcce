"""The plugin host: discovery, settings, and containment of plugins that raise or hang."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from hub.config import HubConfig, load_config
from hub.errors import PluginError
from hub.hookspecs import hookimpl
from hub.metrics import Metrics
from hub.plugins import BUILTIN_PLUGINS, build_plugin_host, installed_plugins


class CounterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: int = Field(1, ge=1, description="How much to count per call.")


class Counting:
    """A well-behaved plugin: settings, lifecycle and health."""

    def __init__(self):
        self.started = 0
        self.stopped = 0
        self.seen_settings = None

    @hookimpl
    def plugin_settings_model(self):
        return CounterSettings

    @hookimpl
    async def startup(self, hub, settings):
        self.started += 1
        self.seen_settings = settings

    @hookimpl
    async def shutdown(self, hub):
        self.stopped += 1

    @hookimpl
    def register_transforms(self, hub, settings):
        return [f"transform-step-{settings.step}"]

    @hookimpl
    def plugin_health(self, hub):
        return {"hub": hub}


class Crashing:
    """Raises from every hook it implements."""

    @hookimpl
    def register_transforms(self, hub, settings):
        raise RuntimeError("boom")

    @hookimpl
    def plugin_health(self, hub):
        raise RuntimeError("health boom")


class Hanging:
    """A sync hook that never returns, and an async one that never returns."""

    def __init__(self):
        self.release = threading.Event()

    @hookimpl
    def register_transforms(self, hub, settings):
        self.release.wait()

    @hookimpl
    async def startup(self, hub, settings):
        await asyncio.Event().wait()


class BrokenSettings:
    @hookimpl
    def plugin_settings_model(self):
        raise ImportError("settings module missing")


class Misspelled:
    @hookimpl
    def register_transfroms(self, hub):
        return []


def host_with(tmp_path: Path, toml: str, **plugins):
    host = build_plugin_host(Metrics(), extra=plugins.items(), installed=False)
    path = tmp_path / "cityhub.toml"
    path.write_text('[hooks]\ntimeout = "0.3s"\nmax_consecutive_failures = 2\n' + toml)
    host.configure(load_config(path, plugin_models=host.settings_models()))
    host.attach("the-hub")
    return host


async def test_settings_reach_the_plugin_and_results_name_their_plugin(tmp_path):
    counting = Counting()
    host = host_with(tmp_path, "[plugins.counting]\nstep = 5\n", counting=counting)
    await host.startup()
    assert counting.started == 1 and counting.seen_settings == CounterSettings(step=5)
    assert await host.call("register_transforms") == [("counting", ["transform-step-5"])]
    assert (await host.health())["counting"]["details"] == {"hub": "the-hub"}


async def test_crashing_plugin_is_contained_counted_and_disabled(tmp_path):
    host = host_with(tmp_path, "", counting=Counting(), crashing=Crashing())
    first = await host.call("register_transforms")
    assert first == [("counting", ["transform-step-1"])]
    state = host.state("crashing")
    assert state.enabled and state.failures == 1 and state.last_error == "register_transforms: RuntimeError: boom"
    await host.call("register_transforms")
    assert not state.enabled and state.disabled_reason == "failures"
    assert await host.call("register_transforms") == [("counting", ["transform-step-1"])]
    assert host.state("counting").failures == 0
    metrics = host.metrics.render().decode()
    assert 'cityhub_plugin_calls_total{hook="register_transforms",outcome="error",plugin="crashing"} 2.0' in metrics
    assert 'cityhub_plugin_enabled{plugin="crashing"} 0.0' in metrics


async def test_hanging_plugin_times_out_and_can_be_re_enabled(tmp_path):
    hanging = Hanging()
    changes = []

    async def listener(name, enabled):
        changes.append((name, enabled))

    host = host_with(tmp_path, "", counting=Counting(), hanging=hanging)
    host.add_listener(listener)
    await host.startup()  # the async startup hangs: timed out, one failure
    assert host.state("hanging").last_error == "startup: timed out after 0.3s"
    assert await host.call("register_transforms") == [("counting", ["transform-step-1"])]
    assert not host.is_enabled("hanging") and changes == [("hanging", False)]
    hanging.release.set()
    await host.enable("hanging")  # startup hangs again, but one failure is below the limit
    assert host.is_enabled("hanging") and changes == [("hanging", False), ("hanging", True)]
    assert host.state("hanging").consecutive_failures == 1


async def test_disable_and_enable_run_shutdown_and_startup(tmp_path):
    counting = Counting()
    host = host_with(tmp_path, "", counting=counting)
    await host.startup()
    await host.disable("counting")
    assert counting.stopped == 1 and await host.call("register_transforms") == []
    assert host.overview()[0]["disabled_reason"] == "admin"
    await host.enable("counting")
    assert counting.started == 2 and host.overview()[0]["enabled"]
    with pytest.raises(PluginError, match="no plugin named 'nope'; installed: counting"):
        await host.enable("nope")


async def test_reload_applies_enabled_flags_and_changed_settings(tmp_path):
    counting = Counting()
    host = host_with(tmp_path, "", counting=counting)
    await host.startup()
    path = tmp_path / "cityhub.toml"
    path.write_text("[plugins.counting]\nenabled = false\n")
    assert await host.apply(load_config(path, plugin_models=host.settings_models())) == ["counting"]
    assert counting.stopped == 1 and not host.is_enabled("counting")
    path.write_text("[plugins.counting]\nstep = 3\n")
    assert await host.apply(load_config(path, plugin_models=host.settings_models())) == ["counting"]
    assert counting.started == 2 and counting.seen_settings == CounterSettings(step=3)


def test_blocking_calls_are_contained_too(tmp_path):
    host = host_with(tmp_path, "", counting=Counting(), crashing=Crashing())
    assert host.call_blocking("register_transforms") == [("counting", ["transform-step-1"])]
    assert host.state("crashing").failures == 1


def test_broken_settings_model_leaves_the_plugin_disabled(tmp_path):
    host = host_with(tmp_path, "[plugins.broken]\nanything = 1\n", broken=BrokenSettings())
    state = host.state("broken")
    assert not state.enabled and state.disabled_reason == "broken"
    assert "ImportError: settings module missing" in state.last_error
    with pytest.raises(PluginError, match="cannot be enabled: broken"):
        asyncio.run(host.enable("broken"))


def test_misspelled_hook_is_an_error_at_start():
    with pytest.raises(PluginError, match="'misspelled' implements a hook that does not exist"):
        build_plugin_host(extra=[("misspelled", Misspelled())], installed=False)


def test_allow_list_and_tracing_from_the_environment(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("CITYHUB_PLUGINS", "counting")
    monkeypatch.setenv("CITYHUB_TRACE_HOOKS", "1")
    host = host_with(tmp_path, "", counting=Counting(), crashing=Crashing())
    assert host.names() == ["counting"]
    with caplog.at_level("INFO", logger="cityhub.plugins"):
        host.call_blocking("register_transforms")
    assert "hook register_transforms → counting: ok" in caplog.text
    monkeypatch.setenv("CITYHUB_PLUGINS", "counting,ghost")
    with pytest.raises(PluginError, match="not installed: ghost"):
        build_plugin_host(extra=[("counting", Counting())], installed=False)


def test_plugin_without_required_settings_is_not_configured(tmp_path):
    class NeedsUrl(BaseModel):
        url: str

    class Needy:
        @hookimpl
        def plugin_settings_model(self):
            return NeedsUrl

    host = host_with(tmp_path, "", needy=Needy())
    assert host.state("needy").disabled_reason == "not configured"


def test_a_config_built_in_code_still_gets_each_plugins_defaults():
    counting = Counting()
    host = build_plugin_host(Metrics(), extra=[("counting", counting)], installed=False)
    host.configure(HubConfig(plugins={"counting": {"step": 4}}))
    assert host.is_enabled("counting") and host.state("counting").settings == CounterSettings(step=4)
    host.configure(HubConfig(plugins={"counting": {"step": 0}}))
    state = host.state("counting")
    assert state.disabled_reason == "not configured" and "greater than or equal to 1" in state.last_error


def test_built_in_plugins_come_in_through_their_entry_points_only(monkeypatch):
    """The built-ins are distributions of their own (``connectors/<name>/``, ``plugins/<name>/``): the host
    finds them in the entry-point group ``cityhub.plugins``, each one its own ``cityhub_<name>`` package."""
    repository = Path(__file__).resolve().parents[1]
    projects = [*repository.glob("connectors/*/pyproject.toml"), *repository.glob("plugins/*/pyproject.toml")]
    assert {project.parent.name for project in projects} == BUILTIN_PLUGINS
    installed = installed_plugins()
    assert BUILTIN_PLUGINS <= set(installed)
    for name in BUILTIN_PLUGINS:
        assert installed[name].module == f"cityhub_{name}"
        assert installed[name].dist.name == f"cityhub-{name.replace('_', '-')}"
    monkeypatch.setenv("CITYHUB_PLUGINS", "redaction")
    host = build_plugin_host(Metrics())
    assert host.names() == ["redaction"]
    assert host.state("redaction").builtin and host.state("redaction").module.__name__ == "cityhub_redaction"
