"""The one tenant-scoping function every tenant-owned query goes through.

``OrgId`` is a checked tenant id: only the authorization dependency makes one, after it
has matched the caller's organization to the one in the path. Repositories take an
``OrgId`` (not a bare UUID) and call ``scoped``, so a query that forgets the tenant
filter does not type-check.
"""

from __future__ import annotations

import uuid
from typing import Any, NewType, TypeVar

from sqlalchemy import Select

OrgId = NewType("OrgId", uuid.UUID)

T = TypeVar("T", bound=tuple[Any, ...])


def scoped(stmt: Select[T], model: Any, org_id: OrgId) -> Select[T]:
    """Restrict ``stmt`` to rows of ``model`` owned by ``org_id``."""
    return stmt.where(model.organization_id == org_id)
