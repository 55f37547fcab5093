"""Which writes change a principal, and the invalidation that follows their commit.

Rather than trusting every service to remember a call, the writes are seen where they
happen: ORM session listeners (installed for every session, as the audit chain's are)
note each flushed row and each bulk statement of the tables a principal or a service
client's authority is made of, with the organization it belongs to, in
``session.info``. ``tracking_db.TrackingDatabase`` reads that note when the transaction
ends and replaces the generations of those organizations (``principal_cache``) before
the caller can answer, so the writer's next request, and anyone else's, sees the change.
Rows the transaction created (a sign-up, a new member and their roles) need nothing:
no cache can hold them yet.

Bulk statements name their organization with ``storage.write_scope``. Where the
organization cannot be told (an unscoped bulk statement, a system role, a platform
service client) the generation of everything is replaced: a harmless over-invalidation
of rare writes. Only a user's ``last_login_at`` and
``updated_at`` are known not to matter, so logins invalidate nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Delete, Insert, Update, event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from faultmaven_auth.storage.models import (
    Organization,
    Role,
    RolePermission,
    ServiceClient,
    Team,
    TeamMembership,
    User,
    UserRole,
)
from faultmaven_auth.storage.write_scope import ORGANIZATION_OPTION

_CHANGES = "faultmaven_principal_changes"
_TRACKED_TABLES = frozenset(
    model.__tablename__
    for model in (
        Organization,
        Role,
        RolePermission,
        ServiceClient,
        Team,
        TeamMembership,
        User,
        UserRole,
    )
)
# Columns a login writes; no principal, permission or team depends on them.
_UNTRACKED_USER_COLUMNS = frozenset({"last_login_at", "updated_at"})


@dataclass
class PrincipalChanges:
    organizations: set[uuid.UUID] = field(default_factory=set)
    everything: bool = False
    # Rows this transaction created: nothing cached can refer to them yet.
    created: set[uuid.UUID] = field(default_factory=set)

    def add(self, organization_id: uuid.UUID | None) -> None:
        if organization_id is None:
            self.everything = True
        else:
            self.organizations.add(organization_id)

    @property
    def any(self) -> bool:
        return self.everything or bool(self.organizations)


def _changes(session: Session) -> PrincipalChanges:
    changes = session.info.get(_CHANGES)
    if changes is None:
        changes = session.info[_CHANGES] = PrincipalChanges()
    return changes


def _organization_in_session(session: Session, model: type[Any], ident: Any) -> uuid.UUID | None:
    """The organization of a row this session has loaded, or None (unknown)."""
    loaded = session.identity_map.get(Session.identity_key(model, ident))
    return getattr(loaded, "organization_id", None)


def organization_of(session: Session, row: object) -> uuid.UUID | None:
    """The organization whose principals ``row`` feeds; None when it cannot be told."""
    if isinstance(row, Organization):
        return row.id
    if isinstance(row, User | Team | Role | ServiceClient):
        return row.organization_id
    if isinstance(row, UserRole):
        return _organization_in_session(session, User, row.user_id)
    if isinstance(row, RolePermission):
        return _organization_in_session(session, Role, row.role_id)
    if isinstance(row, TeamMembership):
        return _organization_in_session(session, Team, row.team_id)
    return None


def _is_new_entity(row: object) -> bool:
    return isinstance(row, Organization | User | Team | Role | ServiceClient)


def _links_new_rows(row: object, created: set[uuid.UUID]) -> bool:
    """A link that only a row created by this transaction depends on (a new user's
    roles and teams, a new role's permissions): nothing cached has it. A new role or
    team given to an existing user still counts, through that user's link."""
    if isinstance(row, UserRole | TeamMembership):
        return row.user_id in created
    if isinstance(row, RolePermission):
        return row.role_id in created
    return False


def _matters(session: Session, row: object) -> bool:
    if getattr(row, "__tablename__", None) not in _TRACKED_TABLES:
        return False
    if isinstance(row, User) and row in session.dirty:
        state = inspect(row)
        changed = {attr.key for attr in state.attrs if attr.history.has_changes()}
        return not changed <= _UNTRACKED_USER_COLUMNS
    return True


def note_flushed_rows(session: Session, _: UOWTransaction) -> None:
    # ``after_flush``: new/dirty/deleted and attribute history still show this flush.
    changes = _changes(session)
    for row in session.new:
        if _is_new_entity(row):
            changes.created.add(row.id)
    for row in (*session.new, *session.dirty, *session.deleted):
        if not _matters(session, row):
            continue
        if row in session.new and (_is_new_entity(row) or _links_new_rows(row, changes.created)):
            continue
        changes.add(organization_of(session, row))


def _sets_only_untracked_user_columns(statement: Update) -> bool:
    """A Core ``UPDATE users`` that writes login bookkeeping only (``last_login_at``)."""
    if getattr(statement.table, "name", None) != User.__tablename__:
        return False
    columns = {getattr(key, "key", key) for key in statement._values or ()}
    return bool(columns) and columns <= _UNTRACKED_USER_COLUMNS


def note_bulk_statements(state: ORMExecuteState) -> None:
    statement = state.statement
    if isinstance(statement, Insert | Update | Delete):
        table = getattr(statement.table, "name", None)
        if isinstance(statement, Update) and _sets_only_untracked_user_columns(statement):
            return
        if table in _TRACKED_TABLES:
            # Unscoped (no ``storage.write_scope`` option): every organization's.
            _changes(state.session).add(state.execution_options.get(ORGANIZATION_OPTION))


def install_principal_tracking() -> None:
    """Note principal writes in every ORM session of this process (idempotent)."""
    if not event.contains(Session, "after_flush", note_flushed_rows):
        event.listen(Session, "after_flush", note_flushed_rows)
    if not event.contains(Session, "do_orm_execute", note_bulk_statements):
        event.listen(Session, "do_orm_execute", note_bulk_statements)


def take_changes(session: AsyncSession) -> PrincipalChanges | None:
    """What the session's transaction changed, if it changed any principal."""
    changes: PrincipalChanges | None = session.sync_session.info.pop(_CHANGES, None)
    return changes if changes is not None and changes.any else None
