"""Which hub handles an event, by where it is: the lowest running hub whose scope holds its cell. A hub keeps
the events of its own scope that no child owns, hands down the ones a child owns, and refuses the ones outside
its scope (a misrouted event, or a cell it does not own) with the reason, to the DLQ — never drops them."""

from __future__ import annotations

from dataclasses import dataclass

from hub.config import HubConfig
from hub.federation.scope import CITY, GridHierarchy, Scope

KEEP = ""  # Ownership.route: the event is this hub's


@dataclass(frozen=True)
class Ownership:
    """This hub's scope and the codes of the child hubs it hands events down to."""

    scope: Scope
    children: frozenset[str] = frozenset()

    def route(self, district: str | None, street: str | None) -> str:
        """:data:`KEEP`, or the code of the child hub that owns a place in ``district`` / ``street`` (grid
        cell ids, None where the location resolved to no cell); :class:`OutsideScope` when it is another
        hub's. A place on no cell of this scope's level stays here: no hub below owns it."""
        if self.scope.level != "city" and (district or street) and not self.scope.holds(district, street):
            raise OutsideScope(self.scope, district, street)
        owner = district if self.scope.level == "city" else street if self.scope.level == "district" else None
        return owner if owner in self.children else KEEP


class OutsideScope(ValueError):
    """An event located outside the hub's scope."""

    def __init__(self, scope: Scope, district: str | None, street: str | None):
        place = f"street {street}" if street else f"district {district}"
        super().__init__(
            f"located in {place}, outside this hub's scope ({scope.level} {scope.code}): "
            f"send it to the city hub, which hands it to the hub that owns it"
        )


def ownership_from_config(config: HubConfig) -> Ownership | None:
    """The hub's :class:`Ownership` from ``[tier]`` (None for a city hub with no children: it keeps everything)."""
    tier = config.tier
    if tier.scope == CITY and not tier.children:
        return None
    hierarchy = GridHierarchy.from_layers(layer.spec() for layer in config.geo.layers)
    return Ownership(hierarchy.scope(tier.scope), frozenset(tier.children))
