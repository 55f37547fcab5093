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
from typing import Any, Final

CONTROL_CHARACTER: Final = "control_character"
LONE_SURROGATE: Final = "lone_surrogate"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_EXCEPT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

_CONTAINERS = frozenset({dict, list, tuple})
_SCALARS = frozenset({int, float, bool, type(None)})

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


def unsafe_value(value: Any, *, allow_line_breaks: bool = False) -> str | None:
    """Why any string inside a decoded JSON value (dict keys too) is refused, or None.

    Iterative, so any nesting depth is safe; the strings are joined and checked in one
    pass, so a megabyte-sized array costs milliseconds, not a Python loop per character.
    """
    if isinstance(value, str):
        return unsafe_text(value, allow_line_breaks=allow_line_breaks)
    texts: list[str] = []
    pending = [value]
    while pending:
        item = pending.pop()
        if type(item) is dict:
            texts.extend(k for k in item if type(k) is str)
            item = list(item.values())
        elif type(item) not in _CONTAINERS:
            continue
        # `type` identity and one set of kinds per container: a long homogeneous array
        # is classified at C speed instead of one isinstance call per element.
        kinds = set(map(type, item))
        if kinds <= _SCALARS:
            continue
        if kinds == {str}:
            texts.extend(item)
            continue
        texts.extend([v for v in item if type(v) is str])
        pending.extend([v for v in item if type(v) in _CONTAINERS])
    return unsafe_text("".join(texts), allow_line_breaks=allow_line_breaks)


def printable(text: str) -> str:
    """``text`` with each control character or lone surrogate replaced by U+FFFD.

    For values recorded rather than validated, such as a User-Agent header kept in the
    audit log: headers arrive as Latin-1, so C1 controls can reach us through a server.
    """
    if text.isprintable():
        return text
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("\ufffd", text))
