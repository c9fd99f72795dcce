"""Loading ``cityhub.toml``: in phases, like Vector's ``validate``, reporting every problem at once as a
:class:`~hub.errors.ConfigError` whose ``issues`` each name file, line and key:

1. parse — TOML syntax (``tomllib``);
2. substitute — ``${NAME}`` / ``${NAME:-default}`` in string values from the environment (secrets live there);
3. structure — the models of :mod:`hub.config.models`, and each plugin's settings against its own model;
4. environment — files the config points at exist (grids, rule files, TLS and credential files);
5. meaning — rules compile, the merge policy builds, ``[tier]`` names cells of the admin grids in their order.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hub.config.models import HubConfig, RuleFile
from hub.errors import ConfigError, ConfigIssue, GeoError, RuleError
from hub.federation.scope import CITY, GridHierarchy, Scope, parent_problem
from hub.rules import Rule, RuleSet
from hub.tomlpos import KeyPath, key_lines, line_of

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)")


class _Document:
    """One TOML file: its text, parsed data, and where each key is written."""

    def __init__(self, path: Path, text: str, data: dict[str, Any]):
        self.path, self.text, self.data = path, text, data
        self._lines: dict[KeyPath, int] | None = None

    def line(self, path: KeyPath) -> int | None:
        if self._lines is None:
            self._lines = key_lines(self.text)
        return line_of(self._lines, path)

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        return ConfigIssue(str(self.path), self.line(path), _dotted(path) or "(file)", message)

    def validation_issues(self, error: ValidationError, prefix: KeyPath = ()) -> list[ConfigIssue]:
        issues = []
        for detail in error.errors(include_url=False):
            path = _written_path(self.data, prefix + tuple(detail["loc"]))
            issues.append(self.issue(path, detail["msg"].removeprefix("Value error, ")))
        return issues


def _dotted(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _written_path(data: Any, loc: KeyPath) -> KeyPath:
    """The part of a pydantic error location that names keys, dropping pydantic's union and type tags."""
    kept: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, dict) and isinstance(part, str) and not _looks_like_tag(part):
            kept.append(part)  # a missing or unknown key: name it, then stop descending
            break
        else:
            continue
        kept.append(part)
    return tuple(kept)


def _looks_like_tag(part: str) -> bool:
    return "[" in part or part in {"str", "int", "float", "bool", "dict", "list", "none", "json-or-python"}


def _read_document(path: Path) -> _Document:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror}", [ConfigIssue(str(path), None, "(file)", str(exc.strerror))]
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_POSITION.search(str(exc))
        line = int(found.group(1)) if found else None
        message = _TOML_POSITION.sub("", str(exc)).strip()
        issue = ConfigIssue(str(path), line, "(syntax)", f"invalid TOML: {message}")
        raise ConfigError(f"{path} is not valid TOML", [issue]) from None
    return _Document(path, text, data)


def _substitute_environment(document: _Document, environ: Mapping[str, str]) -> list[ConfigIssue]:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string value, in place; report missing names."""
    issues: list[ConfigIssue] = []

    def substitute(value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            return {key: substitute(item, path + (key,)) for key, item in value.items()}
        if isinstance(value, list):
            return [substitute(item, path + (index,)) for index, item in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            issues.append(document.issue(path, f"environment variable {name} is not set (referenced as ${{{name}}})"))
            return match.group(0)

        return _ENV_REFERENCE.sub(replace, value)

    document.data = substitute(document.data, ())
    return issues


def _file_issues(document: _Document, config: HubConfig) -> list[ConfigIssue]:
    """Phase 4: every file the config points at must exist."""
    candidates: list[tuple[KeyPath, Path | None]] = [
        (("nats", "nkey_seed_file"), config.nats.nkey_seed_file),
        (("nats", "creds_file"), config.nats.creds_file),
    ]
    if config.nats.tls is not None:
        candidates += [(("nats", "tls", name), getattr(config.nats.tls, name)) for name in ("ca", "cert", "key")]
    candidates += [(("geo", "layers", index, "path"), layer.path) for index, layer in enumerate(config.geo.layers)]
    candidates += [(("rule_files", index), path) for index, path in enumerate(config.rule_files)]
    return [
        document.issue(key, f"file not found: {path}")
        for key, path in candidates
        if path is not None and not path.is_file()
    ]


def _load_rule_files(
    config: HubConfig, environ: Mapping[str, str], places: list[tuple[_Document, int]]
) -> tuple[list[Rule], list[ConfigIssue]]:
    """Rules of every rule file; ``places`` gets the document and index of each rule loaded."""
    rules: list[Rule] = []
    issues: list[ConfigIssue] = []
    seen = {rule.id: str(config.source) for rule in config.rules}
    for path in config.rule_files:
        if not path.is_file():
            continue
        try:
            document = _read_document(path)
        except ConfigError as exc:
            issues += exc.issues
            continue
        issues += _substitute_environment(document, environ)
        try:
            loaded = RuleFile.model_validate(document.data, context={"base_dir": path.parent}).rules
        except ValidationError as exc:
            issues += document.validation_issues(exc)
            continue
        for index, rule in enumerate(loaded):
            if rule.id in seen:
                issues.append(
                    document.issue(("rules", index, "id"), f"rule id {rule.id!r} is already defined in {seen[rule.id]}")
                )
            seen[rule.id] = str(path)
            places.append((document, index))
        rules += loaded
    return rules, issues


def _plugin_issues(
    document: _Document, config: HubConfig, plugin_models: Mapping[str, type[BaseModel] | None]
) -> tuple[dict[str, BaseModel | None], list[ConfigIssue]]:
    """Validate each ``[plugins.<name>]`` section against the plugin's own settings model."""
    settings: dict[str, BaseModel | None] = {}
    issues: list[ConfigIssue] = []
    for name in config.plugins:
        if name not in plugin_models:
            known = ", ".join(sorted(plugin_models)) or "none"
            issues.append(
                document.issue(("plugins", name), f"no plugin named {name!r} is installed (installed: {known})")
            )
    for name, model in plugin_models.items():
        section = config.plugins.get(name)
        options = section.options() if section else {}
        if model is None:
            settings[name] = None
            if options:
                issues.append(
                    document.issue(("plugins", name, next(iter(options))), f"plugin {name!r} takes no settings")
                )
            continue
        try:
            settings[name] = model.model_validate(options, context={"base_dir": document.path.parent})
        except ValidationError as exc:
            if section is None:
                settings[name] = None  # not configured: the plugin host leaves it disabled
            else:
                issues += document.validation_issues(exc, prefix=("plugins", name))
    return settings, issues


_EXPRESSION_POSITION = re.compile(r"^line \d+, column \d+$")


def _rule_problem_path(position: str) -> tuple[KeyPath, str]:
    """Where in a rule table a compiler problem is, and what to add to its message."""
    if _EXPRESSION_POSITION.match(position):
        return ("when",), f"{position} of the expression: "
    if position.startswith("JsonLogic"):
        return ("jsonlogic",), f"{position}: "
    if position == "rule":
        return (), ""
    return tuple(int(part) if part.isdigit() else part for part in position.split(".")), ""


def _compile_rules(config: HubConfig, places: list[tuple[_Document, int]]) -> list[ConfigIssue]:
    """Compile every rule once; each problem points at its rule's file and line."""
    try:
        config._rule_set = RuleSet.compile(config.all_rules(), timezone=config.timezone)
    except RuleError as exc:
        where = {rule.id: place for rule, place in zip(config.all_rules(), places, strict=True)}
        issues = []
        for rule_id, position, reason in exc.problems:
            document, index = where[rule_id]
            inside, prefix = _rule_problem_path(position)
            issues.append(document.issue(("rules", index, *inside), prefix + reason.removeprefix("Value error, ")))
        return issues
    return []


def _engine_issues(document: _Document, config: HubConfig) -> list[ConfigIssue]:
    """Settings the engines check when they are built (the merge policy)."""
    try:
        config.merge.policy()
    except ConfigError as exc:
        return [document.issue(("merge",), str(exc))]
    return []


def _tier_issues(document: _Document, config: HubConfig) -> list[ConfigIssue]:
    """``[tier]`` against the admin grids: known codes, the parent one tier up, children one tier down."""
    tier = config.tier
    if tier.scope == CITY and tier.parent is None and not tier.children:
        return []
    try:
        hierarchy = GridHierarchy.from_layers(layer.spec() for layer in config.geo.layers if layer.path.is_file())
    except GeoError as exc:
        return [document.issue(("geo", "layers"), str(exc))]
    issues: list[ConfigIssue] = []

    def scope_at(path: KeyPath, code: str) -> Scope | None:
        try:
            return hierarchy.scope(code)
        except ValueError as exc:
            issues.append(document.issue(path, str(exc)))
            return None

    scope = scope_at(("tier", "scope"), tier.scope)
    parent = scope_at(("tier", "parent", "scope"), tier.parent.scope) if tier.parent else None
    if scope is not None and parent is not None and (problem := parent_problem(scope, parent)):
        issues.append(document.issue(("tier", "parent", "scope"), problem))
    for index, code in enumerate(tier.children):
        child = scope_at(("tier", "children", index), code)
        if scope is not None and child is not None and (problem := parent_problem(child, scope)):
            issues.append(document.issue(("tier", "children", index), f"not a child of this hub: {problem}"))
    return issues


def load_config(
    path: str | Path,
    *,
    plugin_models: Mapping[str, type[BaseModel] | None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HubConfig:
    """Load and check ``cityhub.toml``; raise :class:`ConfigError` listing every problem with file, line and key.

    ``plugin_models`` maps each installed plugin to its settings model (``PluginHost.settings_models()``); when
    given, ``[plugins.<name>]`` sections are validated against them and unknown plugin names are errors.
    A plugin with required settings and no section is left unconfigured (``plugin_settings(name)`` is None).
    """
    path = Path(path)
    environ = os.environ if environ is None else environ
    document = _read_document(path)
    issues = _substitute_environment(document, environ)
    try:
        config = HubConfig.model_validate(document.data, context={"base_dir": path.parent})
    except ValidationError as exc:
        issues += document.validation_issues(exc)
        raise _config_error(path, issues) from None
    config._source = path
    issues += _file_issues(document, config)
    places = [(document, index) for index in range(len(config.rules))]
    config._file_rules, rule_issues = _load_rule_files(config, environ, places)
    issues += rule_issues
    if not issues:
        issues += _compile_rules(config, places)
    issues += _engine_issues(document, config)
    issues += _tier_issues(document, config)
    if plugin_models is not None:
        config._plugin_settings, plugin_issues = _plugin_issues(document, config, plugin_models)
        issues += plugin_issues
    if issues:
        raise _config_error(path, issues)
    return config


def _config_error(path: Path, issues: list[ConfigIssue]) -> ConfigError:
    """One error carrying every issue, in file and line order."""
    ordered = sorted(issues, key=lambda issue: (issue.file, issue.line or 0))
    count = f"{len(ordered)} problem{'s' if len(ordered) != 1 else ''}"
    return ConfigError(f"{path}: {count}:\n" + "\n".join(f"  {issue}" for issue in ordered), ordered)
