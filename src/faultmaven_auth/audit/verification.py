"""Recomputes audit hash chains from the stored rows and names the first broken link.

A chain is walked in ``chain_seq`` order up to the head read at the start (events
appended meanwhile are left for the next run). Each event must sit at the next
position, point at the previous event's hash, and hash to what it stores; the walk must
end at the head. Rows without chain fields (written before schema 0003) are counted as
unchained; one written after its chain began is a break, as chaining is automatic.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.storage.audit_chain import GENESIS_HASH, PLATFORM_CHAIN, event_hash
from faultmaven_auth.storage.db import Database
from faultmaven_auth.storage.models import AuditChainHead, AuditEvent

BATCH = 1000


@dataclass(frozen=True)
class ChainBreak:
    """The first event of a chain that does not verify, and why."""

    event_id: str | None
    sequence: int | None
    reason: str


@dataclass
class ChainReport:
    chain: str
    events_checked: int = 0
    unchained_events: int = 0
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH
    broken: ChainBreak | None = None


@dataclass
class VerificationReport:
    chains: list[ChainReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(chain.broken is None for chain in self.chains)

    def as_dict(self) -> dict[str, Any]:
        first = next((c for c in self.chains if c.broken is not None), None)
        return {
            "ok": self.ok,
            "chains_checked": len(self.chains),
            "events_checked": sum(c.events_checked for c in self.chains),
            "unchained_events": sum(c.unchained_events for c in self.chains),
            "first_break": None
            if first is None or first.broken is None
            else {"chain": first.chain, **asdict(first.broken)},
            "chains": [asdict(c) for c in self.chains],
        }


def _in_chain(key: str) -> ColumnElement[bool]:
    if key == PLATFORM_CHAIN:
        return AuditEvent.organization_id.is_(None)
    return AuditEvent.organization_id == uuid.UUID(key)


async def _head(session: AsyncSession, key: str) -> tuple[int, str]:
    row = (
        await session.execute(
            select(AuditChainHead.seq, AuditChainHead.hash).where(AuditChainHead.chain_key == key)
        )
    ).one_or_none()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


async def _walk(session: AsyncSession, report: ChainReport) -> uuid.UUID | None:
    """Check every chained event up to the head; returns the first event's id."""
    expected_seq, expected_prev = 1, GENESIS_HASH
    first_id: uuid.UUID | None = None
    while expected_seq <= report.head_sequence:
        stmt = (
            select(AuditEvent)
            .where(
                _in_chain(report.chain),
                AuditEvent.chain_seq >= expected_seq,
                AuditEvent.chain_seq <= report.head_sequence,
            )
            .order_by(AuditEvent.chain_seq)
            .limit(BATCH)
        )
        rows = list((await session.scalars(stmt)).all())
        session.expunge_all()
        if not rows:
            break
        for row in rows:
            first_id = first_id or row.id
            problem = _link_problem(row, expected_seq, expected_prev)
            if problem is not None:
                report.broken = ChainBreak(str(row.id), row.chain_seq, problem)
                return first_id
            report.events_checked += 1
            expected_seq, expected_prev = expected_seq + 1, row.hash or ""
    if expected_seq <= report.head_sequence:
        missing = report.head_sequence - expected_seq + 1
        report.broken = ChainBreak(
            None,
            expected_seq,
            f"the chain ends at event {expected_seq - 1} but its head is at "
            f"{report.head_sequence}: the newest {missing} event(s) are missing",
        )
    elif expected_prev != report.head_hash:
        report.broken = ChainBreak(
            None, report.head_sequence, "the chain head's hash differs from its last event's"
        )
    return first_id


def _link_problem(row: AuditEvent, expected_seq: int, expected_prev: str) -> str | None:
    if row.chain_seq != expected_seq:
        return (
            f"event(s) {expected_seq} to {(row.chain_seq or 0) - 1} of this chain are missing "
            "(deleted, or moved to another position)"
        )
    if row.prev_hash != expected_prev:
        return "prev_hash is not the previous event's hash (events replaced or reordered)"
    if row.hash != event_hash(row):
        return "the stored fields do not match the event's hash (event altered)"
    return None


async def _check_unchained(
    session: AsyncSession, report: ChainReport, first_id: uuid.UUID | None
) -> None:
    unchained = _in_chain(report.chain), AuditEvent.chain_seq.is_(None)
    report.unchained_events = int(
        await session.scalar(select(func.count()).select_from(AuditEvent).where(*unchained)) or 0
    )
    if report.broken is not None or first_id is None or not report.unchained_events:
        return
    late = await session.scalar(
        select(AuditEvent.id).where(*unchained, AuditEvent.id > first_id).order_by(AuditEvent.id)
    )
    if late is not None:
        report.broken = ChainBreak(
            str(late), None, "the event carries no hash but was written after the chain began"
        )


async def _check_beyond_head(session: AsyncSession, report: ChainReport) -> None:
    """Chained events past the head (a head rolled back or deleted) break the chain.

    The highest position is read before the head again: an event and its head commit
    together, so an append made during the walk never looks like a break.
    """
    if report.broken is not None:
        return
    highest = await session.scalar(
        select(func.max(AuditEvent.chain_seq)).where(_in_chain(report.chain))
    )
    head_now, _ = await _head(session, report.chain)
    if highest is not None and int(highest) > head_now:
        event_id = await session.scalar(
            select(AuditEvent.id).where(_in_chain(report.chain), AuditEvent.chain_seq == highest)
        )
        report.broken = ChainBreak(
            str(event_id),
            int(highest),
            f"the event is at position {highest}, past the chain head at {head_now}",
        )


async def verify_chain(db: Database, key: str) -> ChainReport:
    report = ChainReport(chain=key)
    async with db.session() as session:
        report.head_sequence, report.head_hash = await _head(session, key)
        first_id = await _walk(session, report)
        await _check_unchained(session, report, first_id)
        await _check_beyond_head(session, report)
    return report


async def chain_keys(db: Database) -> list[str]:
    """Every chain that has events or a head; the platform chain first."""
    async with db.session() as session:
        orgs = (await session.scalars(select(AuditEvent.organization_id).distinct())).all()
        heads = (await session.scalars(select(AuditChainHead.chain_key))).all()
    keys = {PLATFORM_CHAIN if org is None else str(org) for org in orgs} | set(heads)
    return sorted(keys, key=lambda k: (k != PLATFORM_CHAIN, k))


async def verify_audit_chains(db: Database, only: str | None = None) -> VerificationReport:
    """Verify one chain (``only``: an organization id or ``platform``) or all of them."""
    keys = [only] if only is not None else await chain_keys(db)
    return VerificationReport([await verify_chain(db, key) for key in keys])
