"""The organization a bulk write belongs to, told to whoever watches the session.

A flushed row says which organization it belongs to; a bulk ``UPDATE``/``DELETE`` does
not. Statements that change tenant data in bulk carry this execution option, so the
principal cache (``tokens.principal_writes``) invalidates that organization only, not
every organization's principals.
"""

from __future__ import annotations

import uuid
from typing import Any

ORGANIZATION_OPTION = "faultmaven_organization_id"


def in_organization(organization_id: uuid.UUID | None) -> dict[str, Any]:
    """Execution options for a bulk statement on ``organization_id``'s rows (None:
    rows of no single organization, as if the option were absent)."""
    return {ORGANIZATION_OPTION: organization_id}
