"""PostgreSQL: ``audit_chain_append``, one call that links and inserts an audit event.

The hot paths (refresh, login) append one audit event per request. Linked from Python,
that holds the chain's head row locked across round trips to the client (advance the
head, insert the event, commit), and under load each of them also waits for the
application's event loop, so one organization's appends queued on that lock. This
function takes the lock, stamps the event's id and time, computes its hash and inserts
it in one call, which can also run inside the statement that makes the event (a refresh
is one statement that commits on its own; see ``tokens.rotation``).

The canonical document (``storage.audit_chain``) is built in Python with holes where the
actor, id, time, organization, previous hash, position and target go; SQL fills in their
JSON text and hashes the UTF-8 bytes with ``sha256``, so there is still one definition
of the document. SQLite needs no function: its single write lock is taken for the whole
transaction.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The id is a UUIDv7 of the same clock reading as ``occurred_at``: 48 bits of Unix
# milliseconds, then the microsecond within that millisecond in the 12-bit ``rand_a``
# field (RFC 9562 section 6.2, method 3), so one chain's ids follow its order.
# gen_random_uuid() supplies the random bits and the variant.
_CREATE = r"""
CREATE FUNCTION audit_chain_append(
    p_chain_key varchar,
    p_fragments text[],
    p_organization_id uuid,
    p_actor_id uuid,
    p_event_type varchar,
    p_target_type varchar,
    p_target_id varchar,
    p_outcome varchar,
    p_ip_address varchar,
    p_user_agent varchar,
    p_request_id varchar,
    p_details json
)
RETURNS TABLE (
    appended_id uuid,
    appended_at timestamptz,
    appended_seq bigint,
    appended_prev_hash varchar,
    appended_hash varchar
)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_seq bigint;
    v_prev varchar;
    v_at timestamptz;
    v_sub_milli integer;
    v_bytes bytea;
    v_id uuid;
    v_hash varchar;
BEGIN
    IF p_fragments IS NULL OR array_length(p_fragments, 1) IS DISTINCT FROM 8
        OR array_position(p_fragments, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'audit_chain_append needs the 8 fragments of the canonical document';
    END IF;
    -- The UPDATE locks the head row until commit before the previous hash is read.
    UPDATE audit_chain_heads SET seq = seq + 1 WHERE chain_key = p_chain_key
        RETURNING seq, hash INTO v_seq, v_prev;
    IF NOT FOUND THEN
        -- First event of this chain: create its head, tolerating a concurrent creator.
        INSERT INTO audit_chain_heads (chain_key, seq, hash)
            VALUES (p_chain_key, 0, repeat('0', 64)) ON CONFLICT DO NOTHING;
        UPDATE audit_chain_heads SET seq = seq + 1 WHERE chain_key = p_chain_key
            RETURNING seq, hash INTO STRICT v_seq, v_prev;
    END IF;
    -- Stamped under the lock: a chain's order is also its time and id order.
    v_at := clock_timestamp();
    v_sub_milli := (extract(microseconds FROM v_at)::bigint % 1000)::integer * 4096 / 1000;
    v_bytes := uuid_send(gen_random_uuid());
    v_bytes := overlay(v_bytes PLACING substring(int8send(
        floor(extract(epoch FROM v_at) * 1000)::bigint) FROM 3) FROM 1 FOR 6);
    v_bytes := set_byte(v_bytes, 6, 112 | (v_sub_milli >> 8));
    v_bytes := set_byte(v_bytes, 7, v_sub_milli & 255);
    v_id := encode(v_bytes, 'hex')::uuid;
    -- Each hole takes the JSON text of its value (to_json escapes strings as Python's
    -- json module does: quote, backslash and control characters only).
    v_hash := encode(sha256(convert_to(
        p_fragments[1] || coalesce(to_json(p_actor_id::text)::text, 'null')
        || p_fragments[2] || to_json(v_id::text)::text
        || p_fragments[3]
        || to_json(to_char(v_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text
        || p_fragments[4] || coalesce(to_json(p_organization_id::text)::text, 'null')
        || p_fragments[5] || to_json(v_prev)::text
        || p_fragments[6] || v_seq::text
        || p_fragments[7] || coalesce(to_json(p_target_id)::text, 'null')
        || p_fragments[8], 'UTF8')), 'hex');
    INSERT INTO audit_events (
        id, occurred_at, organization_id, actor_id, event_type, target_type, target_id,
        outcome, ip_address, user_agent, request_id, details, chain_seq, prev_hash, hash
    ) VALUES (
        v_id, v_at, p_organization_id, p_actor_id, p_event_type, p_target_type, p_target_id,
        p_outcome, p_ip_address, p_user_agent, p_request_id, p_details, v_seq, v_prev, v_hash
    );
    UPDATE audit_chain_heads SET hash = v_hash WHERE chain_key = p_chain_key;
    RETURN QUERY SELECT v_id, v_at, v_seq, v_prev, v_hash;
END
$$
"""

_DROP = (
    "DROP FUNCTION audit_chain_append("
    "varchar, text[], uuid, uuid, varchar, varchar, varchar, varchar, varchar, varchar, "
    "varchar, json)"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DROP)
