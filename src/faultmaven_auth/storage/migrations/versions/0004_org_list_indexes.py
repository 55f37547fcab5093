"""Indexes that serve each organization-scoped list's filter and order together.

Every list of tenant rows filters on ``organization_id`` and orders by ``id`` (keyset
pages); with an index on ``organization_id`` alone the database reads all the
organization's rows and sorts them before returning the first page, so pages slow down
as the tenant grows. ``(organization_id, id)`` lets a page read only the rows it returns.
The single-column indexes these replace are prefixes of the new ones (foreign-key checks
and lookups by organization use the new indexes just as well).

The audit log's ``event_type`` filter gets ``(organization_id, event_type, id)`` in place
of the index on ``event_type`` alone, which only ever served that organization-scoped
filter and left the order to a sort over every organization's events of that type.

Building an index locks its table against writes while it runs (PostgreSQL builds one
over a million audit events in seconds; see benchmarks/results/data_scale.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, columns of the new index, the single-column index it replaces or None)
_INDEXES: tuple[tuple[str, list[str], str | None], ...] = (
    ("audit_events", ["organization_id", "id"], None),
    ("audit_events", ["organization_id", "event_type", "id"], "event_type"),
    ("users", ["organization_id", "id"], "organization_id"),
    ("invitations", ["organization_id", "id"], "organization_id"),
    ("service_clients", ["organization_id", "id"], "organization_id"),
)


def upgrade() -> None:
    for table, columns, replaced in _INDEXES:
        op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, columns)
        if replaced is not None:
            op.drop_index(op.f(f"ix_{table}_{replaced}"), table_name=table)


def downgrade() -> None:
    for table, columns, replaced in reversed(_INDEXES):
        if replaced is not None:
            op.create_index(op.f(f"ix_{table}_{replaced}"), table, [replaced])
        op.drop_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table_name=table)
