"""The command-line interface: every command documents itself, and the operator flows work.

Commands read the same settings as the service, from the environment. Each test starts
from an environment without the service's variables (restored afterwards), in a working
directory of its own, and gives the CLI a private SQLite database where it needs one.
Commands that run an event loop are invoked off the test's loop, in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from faultmaven_auth.cli import main
from faultmaven_auth.config import Settings
from faultmaven_auth.storage.migrate import upgrade_async
from tests.conftest import FAST_ARGON2, PASSWORD, client_for, login, running_app, unique_email

COMMANDS = [
    [],
    ["serve"],
    ["migrate"],
    ["bootstrap"],
    ["keys"],
    ["keys", "rotate"],
    ["keys", "encrypt"],
    ["service-clients"],
    ["service-clients", "create"],
    ["service-clients", "list"],
    ["service-clients", "revoke"],
    ["audit"],
    ["audit", "verify"],
    ["check-config"],
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # set-then-delete records each variable, so values a command sets (serve exports
    # HOST, PORT, WORKERS for its workers) are removed again after the test.
    for name in [
        *(field.upper() for field in Settings.model_fields),
        "BOOTSTRAP_PASSWORD",
        "PROMETHEUS_MULTIPROC_DIR",
    ]:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    await upgrade_async(url)
    return url


def invoke(args: list[str], env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


async def invoke_in_thread(args: list[str], env: dict[str, str] | None = None) -> Result:
    return await asyncio.to_thread(invoke, args, env)


def _child_env(**extra: str) -> dict[str, str]:
    names = {field.upper() for field in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(extra)
    return env


def _run_module(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faultmaven_auth", *args],
        cwd=cwd,
        env=_child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "main")
def test_every_command_answers_help(args: list[str]) -> None:
    """`<command> --help` exits 0 and prints its usage and description."""
    result = invoke([*args, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")
    doc = (main if not args else _command(args)).help
    assert doc
    first_paragraph = " ".join(doc.split("\n\n")[0].split())
    assert first_paragraph in " ".join(result.output.split())


def _command(args: list[str]) -> Any:
    command: Any = main
    for name in args:
        command = command.commands[name]
    return command


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    """`python -m faultmaven_auth --help` works and lists every command."""
    completed = _run_module(["--help"], tmp_path)
    assert completed.returncode == 0, completed.stderr
    for name in ("serve", "migrate", "bootstrap", "keys", "service-clients", "check-config"):
        assert name in completed.stdout


async def test_migrate_and_bootstrap_make_an_owner_who_can_log_in(tmp_path: Path) -> None:
    """migrate + bootstrap on a fresh database print the new ids; the owner then logs in."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'fresh.db'}"
    migrated = await asyncio.to_thread(_run_module, ["migrate"], tmp_path, DATABASE_URL=url)
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout

    email = unique_email("bootstrap")
    bootstrapped = await asyncio.to_thread(
        _run_module,
        ["bootstrap", "--organization-name", "First Org", "--email", email, "--full-name", "Op"],
        tmp_path,
        DATABASE_URL=url,
        BOOTSTRAP_PASSWORD=PASSWORD,
    )
    assert bootstrapped.returncode == 0, bootstrapped.stderr
    created = json.loads(bootstrapped.stdout)
    assert set(created) >= {"organization_id", "user_id", "email"}
    assert PASSWORD not in bootstrapped.stdout + bootstrapped.stderr

    settings = Settings(database_url=url, jwt_issuer="http://testserver", **FAST_ARGON2)
    async with running_app(settings) as app, client_for(app) as client:
        tokens = await login(client, email, PASSWORD)
        me = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    assert me.status_code == 200
    assert me.json()["id"] == created["user_id"]
    assert me.json()["organization_id"] == created["organization_id"]
    assert me.json()["roles"] == ["owner"]


async def test_bootstrap_refuses_a_weak_password(database_url: str) -> None:
    """A weak owner password fails with a clear message and creates nothing."""
    email = unique_email("weak")
    args = ["bootstrap", "--organization-name", "Weak", "--email", email, "--full-name", "W"]
    env = {"DATABASE_URL": database_url}
    weak = await invoke_in_thread([*args, "--password", "short"], env)
    assert weak.exit_code != 0
    assert "WEAK_PASSWORD" in weak.output
    assert "at least 8 characters" in weak.output

    # Nothing was created: the same email bootstraps fine with a good password.
    good = await invoke_in_thread(args, {**env, "BOOTSTRAP_PASSWORD": PASSWORD})
    assert good.exit_code == 0, good.output
    assert json.loads(good.output)["email"] == email


async def test_keys_rotate_publishes_a_new_key_next_to_the_old(database_url: str) -> None:
    """`keys rotate` prints the new kid; a running app publishes it and the previous one."""
    settings = Settings(database_url=database_url, **FAST_ARGON2)
    async with running_app(settings) as app, client_for(app) as client:
        (first,) = (await client.get("/.well-known/jwks.json")).json()["keys"]

    rotated = await invoke_in_thread(["keys", "rotate"], {"DATABASE_URL": database_url})
    assert rotated.exit_code == 0, rotated.output
    result = json.loads(rotated.output)
    assert result["previous"] == [first["kid"]]
    assert result["kid"] != first["kid"]

    async with running_app(settings) as app, client_for(app) as client:
        kids = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert kids == {first["kid"], result["kid"]}


async def test_audit_verify_checks_every_chain_platform_included(database_url: str) -> None:
    """`audit verify` reports each chain with its head; platform events (key rotations)
    form their own chain; an intact log exits 0."""
    env = {"DATABASE_URL": database_url}
    for _ in range(2):
        assert (await invoke_in_thread(["keys", "rotate"], env)).exit_code == 0
    created = await invoke_in_thread(["service-clients", "create", "--name", "gateway"], env)
    assert created.exit_code == 0, created.output

    verified = await invoke_in_thread(["audit", "verify"], env)
    assert verified.exit_code == 0, verified.output
    report = json.loads(verified.output)
    assert report["ok"] is True
    assert report["first_break"] is None
    assert (report["chains_checked"], report["events_checked"]) == (1, 3)
    (chain,) = report["chains"]
    assert chain["chain"] == "platform"
    assert chain["head_sequence"] == 3
    assert len(chain["head_hash"]) == 64

    only = await invoke_in_thread(["audit", "verify", "--organization", "platform"], env)
    assert only.exit_code == 0, only.output
    assert json.loads(only.output)["events_checked"] == 3


async def test_service_clients_create_prints_the_secret_once(database_url: str) -> None:
    """`service-clients create` prints a client id and secret; the secret is not stored."""
    created = await invoke_in_thread(
        ["service-clients", "create", "--name", "gateway"], {"DATABASE_URL": database_url}
    )
    assert created.exit_code == 0, created.output
    body = json.loads(created.output)
    assert body["client_id"]
    assert body["client_secret"]
    assert body["organization_id"] is None
    db_file = Path(database_url.split(":///", 1)[1])
    # The database file (and any write-ahead log left) holds everything stored.
    stored = [
        await asyncio.to_thread(path.read_bytes) for path in db_file.parent.glob(db_file.name + "*")
    ]
    assert body["client_id"].encode() in b"".join(stored)
    assert body["client_secret"].encode() not in b"".join(stored)


def test_check_config_fails_in_production_with_the_defaults() -> None:
    """check-config exits 1 under ENVIRONMENT=production and names every setting to fix."""
    result = invoke(["check-config"], {"ENVIRONMENT": "production"})
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["environment"] == "production"
    problems = " ".join(report["problems"])
    for setting in ("REDIS_URL", "DATABASE_URL", "SIGNING_KEY_ENCRYPTION_KEY"):
        assert setting in problems


def test_check_config_passes_in_development() -> None:
    """With the defaults in development, check-config exits 0 and reports no problems."""
    result = invoke(["check-config"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["environment"] == "development"
    assert report["problems"] == []
    assert (report["database"], report["store"]) == ("sqlite", "in-process")
    assert (report["workers"], report["warnings"]) == (1, [])


PRODUCTION_KEY = "Zq4vN8wE2rT6yU0iO9pA3sD7fG1hJ5kLxC"


def test_check_config_passes_a_complete_production_setup() -> None:
    """PostgreSQL, Redis, an encryption key, an https issuer and a metrics token make
    production pass; the unreachable database is reported, not counted as a problem."""
    result = invoke(
        ["check-config"],
        {
            "ENVIRONMENT": "production",
            "DATABASE_URL": "postgresql+asyncpg://auth@db.internal/auth",
            "REDIS_URL": "redis://cache.internal:6379/0",
            "SIGNING_KEY_ENCRYPTION_KEY": PRODUCTION_KEY,
            "JWT_ISSUER": "https://auth.example.com",
            "METRICS_BEARER_TOKEN": "metrics-scrape-token",
        },
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["problems"] == []
    assert report["signing_keys"]["checked"] is False
    assert "unreachable" in report["signing_keys"]["reason"]
    assert PRODUCTION_KEY not in result.output
    assert "metrics-scrape-token" not in result.output


def test_check_config_reports_an_invalid_value() -> None:
    """A value that does not validate stops the CLI with a message naming the setting."""
    result = invoke(["check-config"], {"CORS_ORIGINS": "*"})
    assert result.exit_code != 0
    assert "invalid configuration" in result.output
    assert "CORS_ORIGINS" in result.output


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Stand-in for uvicorn.run that records how the server would have been started."""
    calls: list[dict[str, Any]] = []

    def fake_run(app: str, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr("uvicorn.run", fake_run)
    return calls


def test_serve_refuses_several_workers_on_the_in_process_store(
    uvicorn_calls: list[dict[str, Any]],
) -> None:
    """`serve --workers 2` without REDIS_URL exits non-zero, says why, and starts nothing."""
    result = invoke(["serve", "--workers", "2"])
    assert result.exit_code != 0
    assert "refusing to start" in result.output
    assert "REDIS_URL" in result.output
    assert uvicorn_calls == []


def test_serve_runs_one_worker_per_core_when_the_store_is_shared(
    uvicorn_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --workers or WORKERS: one worker per core with REDIS_URL, else one;
    --workers still overrides."""
    monkeypatch.setattr("faultmaven_auth.config.available_cores", lambda: 3)
    for args, env in (
        (["serve"], {"REDIS_URL": "redis://x"}),
        (["serve"], {}),
        (["serve", "--workers", "2"], {"REDIS_URL": "redis://x"}),
        (["serve"], {"REDIS_URL": "redis://x", "WORKERS": "1"}),
    ):
        # Each start is its own process in real life: nothing exported by the last one.
        result = invoke(args, {"REDIS_URL": None, "WORKERS": None, **env})
        assert result.exit_code == 0, result.output
    assert [call["workers"] for call in uvicorn_calls] == [3, 1, 2, 1]


def test_serve_refuses_an_unsafe_production_configuration(
    uvicorn_calls: list[dict[str, Any]],
) -> None:
    """`serve` in production with the embedded defaults exits non-zero and starts nothing."""
    result = invoke(["serve"], {"ENVIRONMENT": "production"})
    assert result.exit_code != 0
    assert "DATABASE_URL" in result.output
    assert uvicorn_calls == []


def test_serve_starts_uvicorn_with_the_app_factory(uvicorn_calls: list[dict[str, Any]]) -> None:
    """A safe configuration reaches uvicorn: the served app factory, on 127.0.0.1, with the
    options."""
    result = invoke(["serve", "--port", "8123", "--workers", "2"], {"REDIS_URL": "redis://x"})
    assert result.exit_code == 0, result.output
    assert len(uvicorn_calls) == 1
    call = uvicorn_calls[0]
    assert call["app"] == "faultmaven_auth.app:create_served_app"
    assert call["factory"] is True
    assert (call["host"], call["port"], call["workers"]) == ("127.0.0.1", 8123, 2)


_FREEZE_PROBE = """
import asyncio, gc, json
from faultmaven_auth.app import create_app, create_served_app

async def frozen_by(factory):
    app = factory()
    before = gc.get_freeze_count()
    async with app.router.lifespan_context(app):
        return gc.get_freeze_count() - before

print(json.dumps([asyncio.run(frozen_by(create_app)), asyncio.run(frozen_by(create_served_app))]))
"""


async def test_served_workers_freeze_their_startup_heap(database_url: str, tmp_path: Path) -> None:
    """A worker of `serve` moves what its startup built out of the cyclic collector's
    reach (a full collection no longer walks the whole app under load); an app built
    with `create_app`, as tests and embedders do, leaves the collector alone."""
    probe = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _FREEZE_PROBE],
        cwd=tmp_path,
        env=_child_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    plain, served = json.loads(probe.stdout.splitlines()[-1])
    assert plain == 0
    # The modules, routes, engine and caches: well over 100,000 objects.
    assert served > 100_000
