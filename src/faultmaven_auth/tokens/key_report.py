"""The stored signing keys' state for ``check-config``: counts only, never key material.

The check connects to the database when it answers within a few seconds; when it does
not (or the SQLite file does not exist yet) the report says why and adds no problem,
since the service encrypts plaintext keys itself when it starts.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from faultmaven_auth.config import Environment, Settings
from faultmaven_auth.storage.db import Database, create_engine
from faultmaven_auth.tokens.keys import KeyCipher, inventory_keys


def cipher_for(settings: Settings) -> KeyCipher:
    secret = settings.signing_key_encryption_key
    return KeyCipher(secret.get_secret_value() if secret else None)


DATABASE_CHECK_TIMEOUT_SECONDS = 5.0


async def signing_key_report(settings: Settings) -> dict[str, Any]:
    """The stored signing keys' state, or why it could not be read (never key material)."""
    # Imported here: the app module imports the token package.
    from faultmaven_auth.app import database_unreachable

    path = settings.sqlite_path()
    if settings.uses_sqlite and (path is None or not path.exists()):
        return {"checked": False, "reason": "the SQLite database does not exist yet"}
    db = Database(create_engine(settings.database_url, pool_size=1))
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_SECONDS):
            async with db.session() as session:
                inventory = await inventory_keys(session, cipher_for(settings))
    except TimeoutError:
        return {"checked": False, "reason": "the database did not answer in time"}
    except Exception as exc:
        if database_unreachable(exc):
            return {
                "checked": False,
                "reason": f"the database is unreachable ({type(exc).__name__})",
            }
        return {
            "checked": False,
            "reason": f"the signing keys could not be read; is the database migrated? "
            f"({type(exc).__name__})",
        }
    finally:
        await db.dispose()
    return {"checked": True, **dataclasses.asdict(inventory)}


def signing_key_problems(settings: Settings, report: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if not report["checked"]:
        return problems
    if report["plaintext"] and settings.environment is Environment.PRODUCTION:
        problems.append(
            f"{report['plaintext']} signing key(s) are stored in plaintext: run "
            "`faultmaven-auth keys encrypt` with SIGNING_KEY_ENCRYPTION_KEY set"
        )
    if report["undecryptable"]:
        problems.append(
            f"{report['undecryptable']} signing key(s) cannot be decrypted with "
            "SIGNING_KEY_ENCRYPTION_KEY (wrong or missing secret); the service would not start"
        )
    return problems
