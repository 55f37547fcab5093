"""Service clients: machines that call introspection with HTTP Basic (id + secret).

The secret is shown once at creation and stored as a SHA-256 hash; it is a 256-bit
random value, so a fast hash is enough. Comparison is constant-time, and an unknown
client id costs the same comparison as a known one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from faultmaven_auth.errors import Unauthorized
from faultmaven_auth.hostile_input import unsafe_text
from faultmaven_auth.storage.models import ServiceClient
from faultmaven_auth.tokens.service import hash_token

_DUMMY_HASH = hash_token("no-such-client")


@dataclass(frozen=True)
class CreatedServiceClient:
    client: ServiceClient
    client_secret: str


def create_service_client(
    session: AsyncSession, *, name: str, organization_id: uuid.UUID | None
) -> CreatedServiceClient:
    secret = "fms_" + secrets.token_urlsafe(32)
    client = ServiceClient(
        client_id="sc_" + secrets.token_hex(12),
        secret_hash=hash_token(secret),
        name=name,
        organization_id=organization_id,
    )
    session.add(client)
    return CreatedServiceClient(client=client, client_secret=secret)


def parse_basic_auth(header: str | None) -> tuple[str, str]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise _client_auth_failed()
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _client_auth_failed() from exc
    client_id, sep, secret = decoded.partition(":")
    # Control characters are in no issued id or secret; refused here, they never reach
    # a query (PostgreSQL would fail on a NUL where SQLite just finds nothing).
    if not sep or unsafe_text(decoded) is not None:
        raise _client_auth_failed()
    return client_id, secret


async def authenticate_service_client(session: AsyncSession, header: str | None) -> ServiceClient:
    client_id, secret = parse_basic_auth(header)
    client = await session.scalar(select(ServiceClient).where(ServiceClient.client_id == client_id))
    expected = client.secret_hash if client is not None else _DUMMY_HASH
    matches = hmac.compare_digest(expected, hash_token(secret))
    if client is None or not matches or client.revoked_at is not None:
        raise _client_auth_failed()
    return client


def _client_auth_failed() -> Unauthorized:
    error = Unauthorized("Client authentication failed", code="INVALID_CLIENT")
    error.headers = {"WWW-Authenticate": 'Basic realm="introspection"'}
    return error
