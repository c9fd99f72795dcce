"""``docs/config.md``, the reference of every section and key of ``cityhub.toml``, generated from the models'
JSON Schema (types and descriptions) and their defaults: ``python -m hub.config > docs/config.md``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from hub.config.models import HubConfig
from hub.rules import Actions

_MAP_PLACEHOLDERS = {"plugins": "<name>", "per_category": "<category>"}
_SHORT_ENUM = 6


def _ref_name(schema: dict[str, Any]) -> str | None:
    return schema["$ref"].rsplit("/", 1)[-1] if "$ref" in schema else None


def _map_values(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of a map's values: ``additionalProperties``, or the one pattern of keys with a pattern."""
    if isinstance(schema.get("additionalProperties"), dict):
        return schema["additionalProperties"]
    patterns = list(schema.get("patternProperties", {}).values())
    return patterns[0] if len(patterns) == 1 else None


def _nested_model(schema: dict[str, Any], definitions: dict[str, Any]) -> tuple[str, str] | None:
    """(definition name, shape) when a property holds a section: a table, an array of tables or a map."""
    options = [option for option in schema.get("anyOf", [schema]) if option.get("type") != "null"]
    for option, shape in [(option, "table") for option in options] + [
        (schema.get("items", {}), "array"),
        (_map_values(schema) or {}, "map"),
    ]:
        name = _ref_name(option)
        if name and "properties" in definitions[name]:
            return name, shape
    return None


def _type_text(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    name = _ref_name(schema)
    if name:
        target = definitions[name]
        if "enum" in target:
            values = target["enum"]
            return " / ".join(f"`{v}`" for v in values) if len(values) <= _SHORT_ENUM else f"{name.lower()} (see below)"
        return "table"
    if "anyOf" in schema:
        return " or ".join(dict.fromkeys(_type_text(option, definitions) for option in schema["anyOf"]))
    if "enum" in schema:
        return " / ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}), definitions)}"
    if kind == "object" and (values := _map_values(schema)) is not None:
        return f"table of {_type_text(values, definitions)}"
    if schema.get("format") == "password":
        return "secret string"
    if schema.get("examples") == ["90s", "15m", "1h30m", 3600]:
        return "duration"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _value_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size and seconds % size == 0:
                return f"`{int(seconds // size)}{unit}`"
        return f"`{seconds:g}s`"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, (list, dict)) and not value:
        return "`[]`" if isinstance(value, list) else "`{}`"
    if isinstance(value, dict):
        return "<br>".join(f"`{key} = {_value_text(item).strip('`')}`" for key, item in value.items())
    if value is None:
        return "none"
    return f"`{getattr(value, 'value', value)}`"


def _section_rows(model_schema: dict[str, Any], instance: BaseModel | None, definitions: dict[str, Any]) -> list[str]:
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    required = set(model_schema.get("required", []))
    for key, field in model_schema.get("properties", {}).items():
        if key in required:
            default = "required"
        elif instance is not None:
            default = _value_text(getattr(instance, key))
        else:
            default = (
                _value_text(field["default"])
                if "default" in field
                else ("`{}`" if field.get("type") == "object" else "`[]`")
            )
        description = field.get("description", "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{key}` | {_type_text(field, definitions)} | {default} | {description} |")
    return rows


def config_reference() -> str:
    """``docs/config.md``: every section and key of ``cityhub.toml``, generated from the models' JSON Schema
    (types and descriptions) and their defaults."""
    schema = HubConfig.model_json_schema(mode="validation")
    actions = Actions.model_json_schema(mode="validation")
    definitions = {**schema.get("$defs", {}), **actions.get("$defs", {})}
    out = [
        "# Configuration reference (`cityhub.toml`)",
        "",
        "Generated from the models in `hub/config/models.py` by `python -m hub.config > docs/config.md`; a test",
        "keeps it in sync. Unknown keys are errors. String values may use `${NAME}` or `${NAME:-default}` to read",
        'the environment (put secrets there). Durations are written `"90s"`, `"15m"`, `"1h30m"`, `"2d"` or',
        "as seconds. Relative paths are relative to the directory of the config file. Check a file with",
        "`cityhub validate FILE`. `cityhub.toml` at the root of the repository is a complete example.",
        "",
    ]

    def visit(title: str, path: str, model_schema: dict[str, Any], instance: BaseModel | None) -> None:
        out.extend([f"## {title}", "", " ".join(model_schema.get("description", "").split()), ""])
        out.extend([*_section_rows(model_schema, instance, definitions), ""])
        for key, field in model_schema.get("properties", {}).items():
            nested = _nested_model(field, definitions)
            if nested is None:
                continue
            name, shape = nested
            child = f"{path}.{key}" if path else key
            child_instance = getattr(instance, key, None) if shape == "table" and instance is not None else None
            heading = {
                "table": f"[{child}]",
                "array": f"[[{child}]]",
                "map": f"[{child}.{_MAP_PLACEHOLDERS.get(key, '<key>')}]",
            }[shape]
            visit(
                f"`{heading}`",
                child,
                definitions[name],
                child_instance if isinstance(child_instance, BaseModel) else None,
            )

    visit("Top level", "", schema, HubConfig())
    visit("`[rules.actions]`", "rules.actions", actions, None)
    for name, definition in sorted(definitions.items()):
        if "enum" in definition and len(definition["enum"]) > _SHORT_ENUM:
            out.extend(
                [
                    f"## {name}",
                    "",
                    " ".join(definition.get("description", "").split()),
                    "",
                    ", ".join(f"`{value}`" for value in definition["enum"]),
                    "",
                ]
            )
    return "\n".join(out).rstrip() + "\n"
