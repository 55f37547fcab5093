"""Short-lived, single-use SSO values in the key-value store (Redis or in-process).

Three kinds: the *pending login* (keyed by the ``state`` sent to the provider; for
OIDC it holds the nonce, the PKCE verifier, where to send the browser back and a hash
of the browser's binding cookie; for SAML the AuthnRequest ID, keyed by the
RelayState), the *login code* handed to the application at the end, and the SAML
*assertion IDs* already accepted (the replay store). Keys are
hashes of the random values, so the store never holds a usable value as a key.

Single use is the store's delete: only the caller whose delete removed the key goes on,
so two callbacks racing with one state cannot both succeed. A used state leaves a
tombstone for its TTL, which tells a replay (``replayed``) from a made-up or expired
state (``state_mismatch``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from faultmaven_auth.sso.errors import SsoLoginRefused
from faultmaven_auth.storage.kv import KeyValueStore

_PENDING = "sso:state:"
_USED = "sso:state-used:"
_CODE = "sso:code:"
_SAML_PENDING = "sso:saml-state:"
_SAML_USED = "sso:saml-state-used:"
_SAML_ASSERTION = "sso:saml-assertion:"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PendingLogin:
    provider_id: str
    organization_id: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    app_state: str | None
    browser_hash: str


@dataclass(frozen=True)
class LoginGrant:
    """What the one-time code stands for: a user signed in through a provider."""

    user_id: str
    organization_id: str
    provider_id: str
    redirect_uri: str
    # auth_attempts_total / audit method of the protocol that signed the user in.
    method: str = "sso_oidc"


def browser_hash(binding: str) -> str:
    return _digest(binding)


@dataclass(frozen=True)
class PendingSamlLogin:
    provider_id: str
    organization_id: str
    request_id: str  # the AuthnRequest ID, which the response's InResponseTo must carry
    redirect_uri: str
    app_state: str | None


async def save_pending_login(
    kv: KeyValueStore, state: str, pending: PendingLogin, ttl_seconds: int
) -> None:
    await kv.set(_PENDING + _digest(state), json.dumps(asdict(pending)), ttl_seconds)


async def _take(
    kv: KeyValueStore, prefix: str, used_prefix: str, state: str, ttl: int, used_reason: str
) -> str:
    key = prefix + _digest(state)
    value = await kv.get(key)
    if value is None or not await kv.delete(key):
        used = await kv.get(used_prefix + _digest(state))
        raise SsoLoginRefused(used_reason if used or value else "state_mismatch")
    await kv.set(used_prefix + _digest(state), "1", ttl)
    return value


async def take_pending_login(kv: KeyValueStore, state: str, ttl_seconds: int) -> PendingLogin:
    value = await _take(kv, _PENDING, _USED, state, ttl_seconds, "replayed")
    return PendingLogin(**json.loads(value))


async def save_pending_saml_login(
    kv: KeyValueStore, relay_state: str, pending: PendingSamlLogin, ttl_seconds: int
) -> None:
    await kv.set(_SAML_PENDING + _digest(relay_state), json.dumps(asdict(pending)), ttl_seconds)


async def take_pending_saml_login(
    kv: KeyValueStore, relay_state: str, ttl_seconds: int
) -> PendingSamlLogin:
    """The pending SAML login; a RelayState already used is ``state_mismatch`` (in SAML,
    ``replayed`` names an assertion accepted before, see ``assertion_accepted``)."""
    value = await _take(kv, _SAML_PENDING, _SAML_USED, relay_state, ttl_seconds, "state_mismatch")
    return PendingSamlLogin(**json.loads(value))


def _assertion_key(provider_id: str, assertion_id: str) -> str:
    return _SAML_ASSERTION + _digest(f"{provider_id}:{assertion_id}")


async def assertion_accepted(kv: KeyValueStore, provider_id: str, assertion_id: str) -> bool:
    """Whether this provider's assertion ID was accepted before (a replay)."""
    return await kv.get(_assertion_key(provider_id, assertion_id)) is not None


async def accept_assertion_once(
    kv: KeyValueStore, provider_id: str, assertion_id: str, ttl_seconds: int
) -> bool:
    """Remember the assertion ID; False when another request remembered it first."""
    key = _assertion_key(provider_id, assertion_id)
    return await kv.set_if_absent(key, "1", max(1, ttl_seconds))


async def save_login_code(kv: KeyValueStore, code: str, grant: LoginGrant, ttl: int) -> None:
    await kv.set(_CODE + _digest(code), json.dumps(asdict(grant)), ttl)


async def take_login_code(kv: KeyValueStore, code: str) -> LoginGrant | None:
    key = _CODE + _digest(code)
    value = await kv.get(key)
    if value is None or not await kv.delete(key):
        return None
    return LoginGrant(**json.loads(value))
