"""SSO: providers per organization, redirect URIs, claimed email domains, linked identities.

A domain is unique among *verified* claims only (partial unique index), so an
unverified claim cannot squat on a domain another organization owns.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sso_domains",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("verification_token", sa.String(length=64), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_sso_domains_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_domains")),
        sa.UniqueConstraint(
            "organization_id", "domain", name=op.f("uq_sso_domains_organization_id_domain")
        ),
    )
    with op.batch_alter_table("sso_domains", schema=None) as batch_op:
        batch_op.create_index(
            "uq_sso_domains_verified_domain",
            ["domain"],
            unique=True,
            sqlite_where=sa.text("verified_at IS NOT NULL"),
            postgresql_where=sa.text("verified_at IS NOT NULL"),
        )

    op.create_table(
        "sso_redirect_uris",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("uri", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_sso_redirect_uris_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_redirect_uris")),
        sa.UniqueConstraint(
            "organization_id", "uri", name=op.f("uq_sso_redirect_uris_organization_id_uri")
        ),
    )
    op.create_table(
        "sso_providers",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("provider_type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=True),
        sa.Column("secret_encrypted", sa.Boolean(), nullable=False),
        sa.Column("allowed_domains", sa.JSON(), nullable=False),
        sa.Column("jit_enabled", sa.Boolean(), nullable=False),
        sa.Column("default_role_id", sa.Uuid(), nullable=False),
        sa.Column("group_role_map", sa.JSON(), nullable=False),
        sa.Column("sso_required", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["default_role_id"], ["roles.id"], name=op.f("fk_sso_providers_default_role_id_roles")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_sso_providers_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_providers")),
    )
    with op.batch_alter_table("sso_providers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_providers_organization_id"), ["organization_id"], unique=False
        )

    op.create_table(
        "sso_identities",
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_sso_identities_organization_id_organizations"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["sso_providers.id"],
            name=op.f("fk_sso_identities_provider_id_sso_providers"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sso_identities_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_identities")),
        sa.UniqueConstraint(
            "provider_id", "subject", name=op.f("uq_sso_identities_provider_id_subject")
        ),
    )
    with op.batch_alter_table("sso_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sso_identities_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sso_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_identities_user_id"))

    op.drop_table("sso_identities")
    with op.batch_alter_table("sso_providers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sso_providers_organization_id"))

    op.drop_table("sso_providers")
    op.drop_table("sso_redirect_uris")
    with op.batch_alter_table("sso_domains", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_sso_domains_verified_domain",
            sqlite_where=sa.text("verified_at IS NOT NULL"),
            postgresql_where=sa.text("verified_at IS NOT NULL"),
        )

    op.drop_table("sso_domains")
