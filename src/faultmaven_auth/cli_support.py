"""What every command shares: settings rendered for a human, an event loop, the audit meta."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from faultmaven_auth.audit.recorder import RequestMeta
from faultmaven_auth.config import Settings, load_settings

T = TypeVar("T")

CLI_META = RequestMeta(user_agent="faultmaven-auth-cli")


def cli_settings(**overrides: Any) -> Settings:
    """The service's settings (environment, ``.env``) with the command's options on top."""
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic's ValidationError, rendered for a human
        raise click.ClickException(f"invalid configuration: {exc}") from exc


def run_async(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(factory())
