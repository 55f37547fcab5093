"""Authorization policies as predicates over permission sets."""

from __future__ import annotations

from collections.abc import Iterable

from faultmaven_auth.rbac.permissions import Permission


def can_grant(actor: frozenset[Permission], granted: Iterable[Permission]) -> bool:
    """Nobody can hand out (or take away) a permission they do not hold themselves."""
    return set(granted) <= actor


def can_manage_user(actor: frozenset[Permission], target: frozenset[Permission]) -> bool:
    """Acting on another member needs every permission that member holds."""
    return target <= actor
