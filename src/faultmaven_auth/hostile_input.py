"""Which characters a request may carry in its strings, and the checks that enforce it.

Control characters and lone surrogates are refused wherever a client sends text:

- C0 controls (U+0000-U+001F), DEL (U+007F) and C1 controls (U+0080-U+009F). PostgreSQL
  refuses NUL in text while SQLite stores it, so the same request would be valid on one
  backend and a server error on the other; the rest have no business in names, emails,
  tokens or passwords and are a classic way to forge log lines or hide text.
- Lone surrogates (U+D800-U+DFFF). JSON's ``"\\ud800"`` decodes to one, and it cannot be
  encoded as UTF-8: the database driver and the password hasher would crash on it.

Free-text fields (descriptions) may also contain tab, line feed and carriage return.
This module is the policy only (no HTTP types, so services may use it too);
``schemas`` applies it to request bodies and to query and path parameters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Final

CONTROL_CHARACTER: Final = "control_character"
LONE_SURROGATE: Final = "lone_surrogate"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

MESSAGES: Final = {
    CONTROL_CHARACTER: "Control characters are not allowed",
    LONE_SURROGATE: "Unpaired surrogate characters are not allowed",
}


def unsafe_text(text: str, *, allow_line_breaks: bool = False) -> str | None:
    """Why ``text`` is refused (``control_character`` or ``lone_surrogate``), or None."""
    if text.isprintable():  # the common case, in C: no control, surrogate or odd space
        return None
    control = _CONTROL_EXCEPT_LINE_BREAKS if allow_line_breaks else _CONTROL
    if control.search(text):
        return CONTROL_CHARACTER
    if _SURROGATE.search(text):
        return LONE_SURROGATE
    return None


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value, keys included; iterative, so any depth is safe."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)


def unsafe_value(value: Any, *, allow_line_breaks: bool = False) -> str | None:
    """The first reason any string inside ``value`` is refused, or None."""
    for text in strings_in(value):
        reason = unsafe_text(text, allow_line_breaks=allow_line_breaks)
        if reason is not None:
            return reason
    return None


def printable(text: str) -> str:
    """``text`` with each control character or lone surrogate replaced by U+FFFD.

    For values recorded rather than validated, such as a User-Agent header kept in the
    audit log: headers arrive as Latin-1, so C1 controls can reach us through a server.
    """
    if text.isprintable():
        return text
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("\ufffd", text))
