"""The docs check every connector's page passes: it names each of the connector's settings."""

from __future__ import annotations

from pydantic import BaseModel


def setting_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key a ``[plugins.<name>]`` section can set, nested models as dotted paths (``listen.port``)."""
    keys = []
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys.extend(setting_keys(field.annotation, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def undocumented_settings(model: type[BaseModel], page: str) -> list[str]:
    """The setting keys of ``model`` that the docs page (Markdown text) does not name as `` `key` ``."""
    return [key for key in setting_keys(model) if f"`{key}`" not in page]
