"""Who is looking: an organization's key sees that organization, an operator's every one."""

from __future__ import annotations

from dataclasses import dataclass

from worker.actions import actor_for
from worker.db.models import ApiKey


@dataclass(frozen=True)
class Viewer:
    key_id: str
    organization_id: str | None
    """``None``: an operator, who sees every organization."""

    @property
    def operator(self) -> bool:
        return self.organization_id is None

    @property
    def actor(self) -> str:
        """What the history records for a change made from the console: the key's actor,
        as for the API (``api:<key id>``)."""
        return actor_for(self.key_id)

    def sees(self, organization_id: str) -> bool:
        return self.organization_id is None or self.organization_id == organization_id


def viewer_of(key: ApiKey) -> Viewer:
    return Viewer(key.id, None if key.operator else key.organization_id)
