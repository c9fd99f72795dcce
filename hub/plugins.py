"""The plugin host: finds plugins, validates their settings and calls their hooks one plugin at a time,
each call under a timeout, so a plugin that raises or hangs is reported and contained.

Every plugin is a distribution of its own registered in the entry-point group ``cityhub.plugins``; the
built-ins (``connectors/<name>/`` and ``plugins/<name>/`` of the repository, installed by ``make install``)
come in the same way as third-party plugins, and nothing is found by scanning folders. Nothing happens at
import: :func:`build_plugin_host` does the discovery. Two environment variables help operators:

``CITYHUB_PLUGINS``       comma-separated allow-list: only these plugins are loaded (built-in or third-party)
``CITYHUB_TRACE_HOOKS``   ``1`` logs every hook call with its plugin, outcome and duration

Typical use by the runtime::

    host = build_plugin_host(metrics)
    config = load_config(path, plugin_models=host.settings_models())
    host.configure(config)
    host.attach(hub)  # passed to every hook as ``hub=``
    await host.startup()
    for plugin, transforms in await host.call("register_transforms"):
        ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any, NamedTuple

import pluggy
from pydantic import BaseModel, ConfigDict, ValidationError

from hub import hookspecs
from hub.errors import PluginError
from hub.handle import HubHandle
from hub.metrics import Metrics

ENTRY_POINT_GROUP = "cityhub.plugins"
# The distributions this repository ships (connectors/<name>/, plugins/<name>/): only ``builtin`` in /plugins.
BUILTIN_PLUGINS = frozenset(
    {
        "citizen_report",
        "citybrain",
        "eldercare",
        "gridworker",
        "hotline12345",
        "iot_mqtt",
        "recycling",
        "enrichment",
        "redaction",
    }
)
DEMO_SECTION_FILE = "demo.toml"
ALLOW_LIST_ENV = "CITYHUB_PLUGINS"
TRACE_ENV = "CITYHUB_TRACE_HOOKS"

log = logging.getLogger("cityhub.plugins")

Listener = Callable[[str, bool], Awaitable[None]]


class UncheckedSettings(BaseModel):
    """Stands in for the settings model of a plugin whose ``plugin_settings_model`` hook failed: its
    section is accepted as written, and the plugin stays disabled."""

    model_config = ConfigDict(extra="allow")


class HookResult(NamedTuple):
    """What one plugin's implementation of a hook returned."""

    plugin: str
    value: Any


@dataclass
class PluginState:
    """One plugin as the host sees it; ``public()`` is what ``/plugins`` and ``/health`` show."""

    name: str
    module: object
    builtin: bool
    settings_model: type[BaseModel] | None = None
    settings: BaseModel | None = None
    enabled: bool = True
    disabled_reason: str | None = None
    consecutive_failures: int = 0
    failures: int = 0
    calls: int = 0
    last_error: str | None = None
    hooks: list[str] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "builtin": self.builtin,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "calls": self.calls,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "hooks": self.hooks,
        }


def _run_in_daemon_thread(function: Callable[..., Any], kwargs: dict[str, Any]) -> concurrent.futures.Future[Any]:
    """Run a sync hook in its own daemon thread: a hung plugin keeps only its thread, never the hub's loop
    or interpreter exit (a pool thread would be joined at exit)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def target() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = function(**kwargs)
            if inspect.iscoroutine(result):
                result = asyncio.run(result)
            future.set_result(result)
        except BaseException as exc:  # handed to the caller, who counts it against the plugin
            future.set_exception(exc)

    threading.Thread(target=target, name=f"hook-{getattr(function, '__name__', 'call')}", daemon=True).start()
    return future


class PluginHost:
    """Plugins, their settings and their health; calls hooks per plugin with a timeout."""

    def __init__(self, manager: pluggy.PluginManager, metrics: Metrics, builtin: frozenset[str]):
        self.manager = manager
        self.metrics = metrics
        self.timeout = 10.0
        self.max_consecutive_failures = 3
        self.trace = os.environ.get(TRACE_ENV, "") not in ("", "0")
        self.hub: HubHandle | None = None
        self._listeners: list[Listener] = []
        self._plugins: dict[str, PluginState] = {}
        for name, plugin in manager.list_name_plugin():
            hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])
            self._plugins[name] = PluginState(name=name, module=plugin, builtin=name in builtin, hooks=hooks)
        self._load_settings_models()

    # --- inventory -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def state(self, name: str) -> PluginState:
        try:
            return self._plugins[name]
        except KeyError:
            raise PluginError(f"no plugin named {name!r}; installed: {', '.join(self.names()) or 'none'}") from None

    def is_enabled(self, name: str) -> bool:
        return self.state(name).enabled

    def overview(self) -> list[dict[str, Any]]:
        """Every plugin's state, for ``GET /plugins`` and ``cityhub plugins list``."""
        return [self._plugins[name].public() for name in self.names()]

    def settings_models(self) -> dict[str, type[BaseModel] | None]:
        """Each plugin's settings model, for :func:`hub.config.load_config`."""
        return {name: state.settings_model for name, state in self._plugins.items()}

    def _load_settings_models(self) -> None:
        for impl in self.manager.hook.plugin_settings_model.get_hookimpls():
            state = self._plugins[impl.plugin_name]
            try:
                state.settings_model = self._call_blocking(impl, {})
            except Exception as exc:  # contained: the plugin is reported and stays disabled
                self._record_failure(state, "plugin_settings_model", exc)
                state.settings_model = UncheckedSettings
                self._set_enabled(state, False, "broken")

    # --- configuration -------------------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Apply a loaded :class:`hub.config.HubConfig`: timeouts, and each plugin's settings and ``enabled``.
        A plugin whose settings model has required fields and no section stays disabled (not configured)."""
        self.timeout = config.hooks.timeout.total_seconds()
        self.max_consecutive_failures = config.hooks.max_consecutive_failures
        for state in self._plugins.values():
            if state.disabled_reason == "broken":
                continue
            state.settings = self._settings_from(config, state)
            if state.settings_model is not None and state.settings is None:
                self._set_enabled(state, False, "not configured")
            elif not config.plugin_enabled(state.name):
                self._set_enabled(state, False, "config")
            elif state.disabled_reason in (None, "config", "not configured"):
                self._set_enabled(state, True, "config")

    @staticmethod
    def _settings_from(config: Any, state: PluginState) -> BaseModel | None:
        """The plugin's settings as the loader validated them; for a config built without this plugin's
        model (in code, or loaded without ``plugin_models``) its section is validated here, so defaults
        such as the redaction of personal data still apply."""
        if config.plugin_settings_checked(state.name) or state.settings_model is None:
            return config.plugin_settings(state.name)
        section = config.plugins.get(state.name)
        try:
            return state.settings_model.model_validate(section.options() if section else {})
        except ValidationError as exc:
            state.last_error = (
                f"settings: {exc.errors(include_url=False)[0]['msg']} (validate the config with its plugins)"
            )
            return None

    async def apply(self, config: Any) -> list[str]:
        """Apply a reloaded config at run time: plugins it enables start, plugins it disables stop, and
        enabled plugins whose settings changed restart. Returns the plugins that changed (listeners were told)."""
        before = {name: (state.enabled, state.settings) for name, state in self._plugins.items()}
        self.configure(config)
        changed = []
        for name, (was_enabled, old_settings) in before.items():
            state = self._plugins[name]
            restarted = state.enabled and was_enabled and state.settings != old_settings
            if state.enabled == was_enabled and not restarted:
                continue
            if was_enabled:
                await self.call("shutdown", only=name)
            if state.enabled:
                await self.call("startup", only=name)
            for listener in self._listeners:
                await listener(name, state.enabled)
            changed.append(name)
        return changed

    def attach(self, hub: HubHandle) -> None:
        """The handle passed to every hook as ``hub=`` (the running :class:`hub.app.Hub`)."""
        self.hub = hub

    def add_listener(self, listener: Listener) -> None:
        """``await listener(name, enabled)`` after a plugin is enabled or disabled at run time, so the
        runtime can rebuild what it collected from hooks (transforms, connectors, routes)."""
        self._listeners.append(listener)

    # --- calling hooks -------------------------------------------------------------------------

    def _arguments(self, impl: Any, state: PluginState, given: dict[str, Any]) -> dict[str, Any]:
        available = {"hub": self.hub, "settings": state.settings, **given}
        return {name: available[name] for name in impl.argnames}

    def _impls(self, hook: str, only: str | None) -> list[tuple[Any, PluginState]]:
        caller = getattr(self.manager.hook, hook, None)
        if caller is None:
            raise PluginError(f"no hook named {hook!r}")
        selected = []
        for impl in reversed(caller.get_hookimpls()):  # pluggy's own call order (tryfirst/trylast honoured)
            state = self._plugins[impl.plugin_name]
            if (only is None and state.enabled) or impl.plugin_name == only:
                selected.append((impl, state))
        return selected

    async def call(self, hook: str, *, only: str | None = None, **kwargs: Any) -> list[HookResult]:
        """Call ``hook`` on every enabled plugin (or just ``only``), each on its own under the timeout.
        Returns the non-None results with the plugin that gave them; failures are counted, not raised."""
        results = []
        for impl, state in self._impls(hook, only):
            started = time.monotonic()
            try:
                arguments = self._arguments(impl, state, kwargs)
                if inspect.iscoroutinefunction(impl.function):
                    value = await asyncio.wait_for(impl.function(**arguments), self.timeout)
                else:
                    future = _run_in_daemon_thread(impl.function, arguments)
                    value = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
            except Exception as exc:  # contained: counted against the plugin, the other plugins still run
                await self._failed(state, hook, exc)
                continue
            self._succeeded(state, hook, started)
            if value is not None:
                results.append(HookResult(state.name, value))
        return results

    def call_blocking(self, hook: str, *, only: str | None = None, **kwargs: Any) -> list[HookResult]:
        """:meth:`call` for code outside an event loop (e.g. building the admin app)."""
        results = []
        for impl, state in self._impls(hook, only):
            started = time.monotonic()
            try:
                value = self._call_blocking(impl, self._arguments(impl, state, kwargs))
            except Exception as exc:  # contained, as in call()
                self._record_failure(state, hook, exc)
                continue
            self._succeeded(state, hook, started)
            if value is not None:
                results.append(HookResult(state.name, value))
        return results

    def _call_blocking(self, impl: Any, arguments: dict[str, Any]) -> Any:
        future = _run_in_daemon_thread(impl.function, arguments)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError() from None

    # --- outcomes ------------------------------------------------------------------------------

    def _succeeded(self, state: PluginState, hook: str, started: float) -> None:
        state.calls += 1
        state.consecutive_failures = 0
        self.metrics.plugin_call(state.name, hook, "ok")
        if self.trace:
            log.info("hook %s → %s: ok in %.1f ms", hook, state.name, (time.monotonic() - started) * 1000)

    def _record_failure(self, state: PluginState, hook: str, exc: BaseException) -> bool:
        """Count a failure; True when it crosses the limit and the plugin must be disabled."""
        timed_out = isinstance(exc, (TimeoutError, asyncio.TimeoutError))
        message = f"{hook}: timed out after {self.timeout:g}s" if timed_out else f"{hook}: {type(exc).__name__}: {exc}"
        state.calls += 1
        state.failures += 1
        state.consecutive_failures += 1
        state.last_error = message
        self.metrics.plugin_call(state.name, hook, "timeout" if timed_out else "error", message)
        return state.enabled and state.consecutive_failures >= self.max_consecutive_failures

    async def _failed(self, state: PluginState, hook: str, exc: BaseException) -> None:
        if self._record_failure(state, hook, exc):
            await self._change(state, False, "failures")

    async def record_failure(self, name: str, what: str, exc: BaseException) -> None:
        """Count a failure the runtime saw in a plugin's object (a transform that raised on a batch)."""
        await self._failed(self.state(name), what, exc)

    def record_success(self, name: str, what: str) -> None:
        """Count a success of a plugin's object; it resets the consecutive-failure count."""
        self._succeeded(self.state(name), what, time.monotonic())

    # --- enable / disable ----------------------------------------------------------------------

    def _set_enabled(self, state: PluginState, enabled: bool, reason: str) -> None:
        state.enabled = enabled
        state.disabled_reason = None if enabled else reason
        if enabled:
            state.consecutive_failures = 0
        self.metrics.plugin_state(state.name, enabled, reason)

    async def _change(self, state: PluginState, enabled: bool, reason: str) -> None:
        if not enabled:
            await self.call("shutdown", only=state.name)
        self._set_enabled(state, enabled, reason)
        if enabled:
            await self.call("startup", only=state.name)
        for listener in self._listeners:
            await listener(state.name, enabled)

    async def enable(self, name: str, reason: str = "admin") -> None:
        """Enable a plugin at run time (also after an automatic disable): runs its ``startup`` and tells the
        listeners. A plugin that is not configured or broken cannot be enabled."""
        state = self.state(name)
        if state.disabled_reason in ("broken", "not configured"):
            why = state.last_error or f"add its [plugins.{name}] section"
            raise PluginError(f"plugin {name!r} cannot be enabled: {state.disabled_reason} ({why})")
        if not state.enabled:
            await self._change(state, True, reason)

    async def disable(self, name: str, reason: str = "admin") -> None:
        """Disable a plugin at run time: runs its ``shutdown`` and tells the listeners."""
        state = self.state(name)
        if state.enabled:
            await self._change(state, False, reason)

    # --- lifecycle -----------------------------------------------------------------------------

    async def startup(self) -> None:
        await self.call("startup")

    async def shutdown(self) -> None:
        await self.call("shutdown")

    async def health(self) -> dict[str, dict[str, Any]]:
        """Each plugin's state plus what its ``plugin_health`` hook reports."""
        details = dict(await self.call("plugin_health"))
        report = {name: self._plugins[name].public() for name in self.names()}
        for name, plugin_details in details.items():
            report[name]["details"] = plugin_details
        return report


# --- discovery -------------------------------------------------------------------------------------


def _allow_list() -> set[str] | None:
    raw = os.environ.get(ALLOW_LIST_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def installed_plugins() -> dict[str, EntryPoint]:
    """Every plugin installed in this environment, by name: the entry points of group ``cityhub.plugins``."""
    return {entry_point.name: entry_point for entry_point in entry_points(group=ENTRY_POINT_GROUP)}


def demo_section_file(entry_point: EntryPoint) -> Traversable:
    """The ``demo.toml`` a plugin ships in its package: its ``[plugins.<name>]`` section for ``cityhub demo``."""
    return files(entry_point.module) / DEMO_SECTION_FILE


def _entry_point_plugins(wanted: Callable[[str], bool]) -> Iterable[tuple[str, object]]:
    for name, entry_point in sorted(installed_plugins().items()):
        if wanted(name):
            yield name, entry_point.load()


def build_plugin_host(
    metrics: Metrics | None = None,
    *,
    extra: Iterable[tuple[str, object]] = (),
    installed: bool = True,
) -> PluginHost:
    """Register the ``installed`` plugins (entry points, built-ins included), then ``extra`` (name, module)
    pairs (tests and embedding). Applies ``CITYHUB_PLUGINS`` and ``CITYHUB_TRACE_HOOKS``; raises PluginError for an
    implementation of a hook that does not exist (a misspelled hook name) or an allow-list naming nothing."""
    allowed = _allow_list()

    def wanted(name: str) -> bool:
        return allowed is None or name in allowed

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    sources = [*(_entry_point_plugins(wanted) if installed else ()), *extra]
    for name, plugin in sources:
        if not wanted(name):
            continue
        if manager.has_plugin(name):
            raise PluginError(f"two plugins are named {name!r}; rename one (its entry-point name)")
        manager.register(plugin, name=name)
    if allowed is not None and (missing := allowed - {name for name, _ in manager.list_name_plugin()}):
        raise PluginError(f"{ALLOW_LIST_ENV} names plugins that are not installed: {', '.join(sorted(missing))}")
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = manager.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin {name!r} implements a hook that does not exist: {exc}") from None
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        manager.trace.root.setwriter(log.info)
        manager.enable_tracing()
    return PluginHost(manager, metrics or Metrics(), BUILTIN_PLUGINS)
