"""Settings of the ``enrichment`` plugin (``[plugins.enrichment]``): who answers for each grid cell."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hub.config import ConfigPath
from hub.models import Category


class Contact(BaseModel):
    """One responsible person or department for a cell (and optionally only some categories)."""

    model_config = ConfigDict(extra="forbid")

    cell: str = Field(description="Grid cell id from the loaded grids, or * for every cell (the fallback).")
    categories: list[Category] = Field(default_factory=list, description="Only these categories; empty: all.")
    name: str = Field(description="Person or duty desk, e.g. 王网格员 or 成华区燃气抢修.")
    role: str = Field("grid_worker", description="grid_worker, grid_leader, department, ...")
    phone: str | None = Field(None, description="Work phone the centre calls (not personal data of a citizen).")
    department: str | None = Field(None, description="Department, e.g. 建设路街道办 or 消防救援站.")


class EnrichmentSettings(BaseModel):
    """Adds the responsible grid worker and department contacts to each event, from a contact table kept in
    config or in a CSV file (columns: cell, categories separated by |, name, role, phone, department)."""

    model_config = ConfigDict(extra="forbid")

    contacts: list[Contact] = Field(default_factory=list, description="Inline contact table.")
    contacts_file: ConfigPath | None = Field(None, description="CSV contact table, read at start-up and on reload.")
    payload_key: str = Field("responsible", description="Key of event.payload that receives the contacts.")
    max_contacts: int = Field(3, ge=1, description="At most this many contacts per event, most specific first.")
