"""Email addresses unique per organization; service clients remember their creator.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_email"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_users_organization_id_email"), ["organization_id", "email"]
        )
        batch_op.create_index(batch_op.f("ix_users_email"), ["email"], unique=False)

    with op.batch_alter_table("service_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_service_clients_created_by_id_users"), "users", ["created_by_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("service_clients", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_service_clients_created_by_id_users"), type_="foreignkey"
        )
        batch_op.drop_column("created_by_id")

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_email"))
        batch_op.drop_constraint(batch_op.f("uq_users_organization_id_email"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_users_email"), ["email"])
