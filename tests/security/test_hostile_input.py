"""Hostile input never causes a 5xx, is never stored, and is refused alike on both backends.

The operations come from the app's own OpenAPI document, so a route added later is
attacked too. For every JSON body field: NUL and other C0 controls, DEL, C1 controls, a
lone surrogate (JSON ``"\\ud800"``), line breaks, an over-long string and wrong types;
for every body: invalid UTF-8, 100 000 nested arrays, a body just under the size limit,
non-objects; for every query and path parameter: the same characters, URL-encoded.
Requests carry a valid owner token and otherwise valid values, so each one reaches the
validation it is aimed at (tenant routes included).

Every answer must be a 4xx with a stable error code; control characters and lone
surrogates in a body field must be a 422 naming that field with type
``control_character`` or ``lone_surrogate`` (descriptions may contain line breaks).
Introspection (RFC 7662, HTTP Basic with a real service client) answers any bad
``token`` with the OAuth-style 400 ``INVALID_REQUEST`` instead.
Each case records its status per backend; the second backend to run it asserts the
same status as the first. The last test lists what the organization holds and checks
that nothing hostile got stored.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from tests.conftest import (
    PASSWORD,
    SYSTEM_ROLE_IDS,
    Account,
    add_member,
    client_for,
    sign_up,
    unique_email,
)

_DOC: dict[str, Any] = create_app(
    Settings(database_url="sqlite+aiosqlite:///unused.db"), configure_logs=False
).openapi()

# Hostile strings for body fields (sent as JSON with \\u escapes, so lone surrogates
# arrive intact). Each maps to the detail type a 422 must carry.
HOSTILE_STRINGS: dict[str, tuple[str, str]] = {
    "nul": ("ab\x00cd", "control_character"),
    "c0_soh": ("ab\x01cd", "control_character"),
    "escape_sequence": ("\x1b[31mred\x1b[0m", "control_character"),
    "line_feed": ("line one\nline two", "control_character"),
    "delete": ("ab\x7fcd", "control_character"),
    "c1_next_line": ("ab\x85cd", "control_character"),
    "c1_csi": ("ab\x9bcd", "control_character"),
    "lone_high_surrogate": ("ab\ud800cd", "lone_surrogate"),
    "lone_low_surrogate": ("\udfffabcd", "lone_surrogate"),
}
OVERLONG = "x" * 20_000
WRONG_TYPES: dict[str, Any] = {"number": 12345, "object": {"a": "b"}, "boolean": True}
# Free-text fields may contain tab, line feed and carriage return (and nothing else).
FREE_TEXT_FIELDS = frozenset({"description", "idp_metadata_xml"})
LINE_BREAKS = frozenset({"line_feed"})

# Query and path parameter values, already URL-encoded.
HOSTILE_PARAMETERS: dict[str, str] = {
    "nul": "%00",
    "line_feed": "a%0Ab",
    "escape": "%1B%5B31m",
    "c1_next_line": "a%C2%85b",
    "surrogate_bytes": "%ED%A0%80",  # a surrogate encoded as UTF-8: invalid UTF-8
    "invalid_utf8": "%FF%FE",
    "overlong": "x" * 4000,
}

# Bytes that are not UTF-8 decode to U+FFFD in a query string: printable, harmless.
UNDECODABLE = frozenset({"surrogate_bytes", "invalid_utf8"})

_STABLE_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


# -- the operations, from the OpenAPI document -------------------------------------------


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = _DOC["components"]["schemas"][name]
    return schema


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an ``anyOf: [X, null]`` (or the schema itself)."""
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _resolve(option)
    return _resolve(schema)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    body: dict[str, Any] | None = None  # the resolved JSON schema of the body
    query: tuple[tuple[str, str | None], ...] = ()  # (name, format)
    path_params: tuple[str, ...] = ()
    string_fields: tuple[str, ...] = field(default=())
    service_client: bool = False  # HTTP Basic with a service client's credentials
    variant: str = ""  # which branch of a ``oneOf`` body (e.g. an SSO provider's type)

    @property
    def oauth_style(self) -> bool:
        """RFC 7662 endpoints answer a bad parameter with 400 ``INVALID_REQUEST``."""
        return self.service_client

    @property
    def name(self) -> str:
        suffix = f" [{self.variant}]" if self.variant else ""
        return f"{self.method} {self.path}{suffix}"


def _is_string_like(schema: dict[str, Any]) -> bool:
    schema = _non_null(schema)
    if schema.get("type") == "string":
        return True
    items = schema.get("items")
    return (
        schema.get("type") == "array"
        and items is not None
        and _non_null(items).get("type") in ("string", None)
    )


def _operations() -> list[Operation]:
    ops = []
    for path, methods in _DOC["paths"].items():
        for method, spec in methods.items():
            content = spec.get("requestBody", {}).get("content", {})
            bodies: list[tuple[str, dict[str, Any] | None]] = [("", None)]
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                # A body that is one of several shapes: each shape is attacked on its own.
                branches = [_resolve(branch) for branch in schema.get("oneOf", [])]
                bodies = [(b["title"], b) for b in branches] or [("", _resolve(schema))]
            ops.extend(_operation(method, path, spec, body, variant) for variant, body in bodies)
    return ops


def _operation(
    method: str, path: str, spec: dict[str, Any], body: dict[str, Any] | None, variant: str
) -> Operation:
    params = spec.get("parameters", [])
    return Operation(
        method=method.upper(),
        path=path,
        variant=variant,
        body=body,
        query=tuple(
            (p["name"], _non_null(p["schema"]).get("format")) for p in params if p["in"] == "query"
        ),
        path_params=tuple(p["name"] for p in params if p["in"] == "path"),
        string_fields=tuple(
            name
            for name, prop in (body or {}).get("properties", {}).items()
            if _is_string_like(prop)
        ),
        service_client=any(
            "serviceClientBasic" in requirement for requirement in spec.get("security", [])
        ),
    )


OPERATIONS = _operations()
BODY_OPERATIONS = [op for op in OPERATIONS if op.body is not None]
BODY_FIELDS = [(op, name) for op in BODY_OPERATIONS for name in op.string_fields]
QUERY_PARAMETERS = [(op, name, fmt) for op in OPERATIONS for name, fmt in op.query]
PATH_PARAMETERS = [(op, name) for op in OPERATIONS for name in op.path_params]


def test_the_suite_sees_every_body_and_parameter() -> None:
    """The OpenAPI walk finds the routes it must attack (guards against a silent no-op)."""
    names = {op.name for op in BODY_OPERATIONS}
    assert {"POST /api/v1/auth/register", "POST /api/v1/auth/login"} <= names
    assert "POST /api/v1/organizations/{org_id}/teams" in names
    assert len(BODY_FIELDS) >= 25
    assert ("GET /api/v1/organizations/{org_id}/audit-events", "since", "date-time") in {
        (op.name, q, fmt) for op, q, fmt in QUERY_PARAMETERS
    }
    assert len(PATH_PARAMETERS) >= 30


# -- a target organization per backend --------------------------------------------------


@dataclass
class Target:
    client: httpx.AsyncClient
    raw: httpx.AsyncClient  # no secret-remembering hooks: they would parse 1 MiB bodies
    owner: Account
    member: Account
    ids: dict[str, str]
    backend: str
    service_client: dict[str, str]  # Authorization header of a real service client
    registered_emails: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
async def target(app: FastAPI, backend: str) -> AsyncIterator[Target]:
    """An organization with a member, a team, a custom role and an invitation."""
    async with client_for(app) as client:
        owner = await sign_up(client, org_name="Hostile Input Target")
        member = await add_member(client, owner, "member")
        team = await client.post(
            f"{owner.org_url}/teams", headers=owner.headers, json={"name": "Target Team"}
        )
        role = await client.post(
            f"{owner.org_url}/roles",
            headers=owner.headers,
            json={"name": "Target Role", "permissions": ["users:read"]},
        )
        invitation = await client.post(
            f"{owner.org_url}/invitations",
            headers=owner.headers,
            json={"email": unique_email("invitee"), "role_id": SYSTEM_ROLE_IDS["viewer"]},
        )
        client_credentials = await client.post(
            f"{owner.org_url}/service-clients", headers=owner.headers, json={"name": "hostile"}
        )
        for created in (team, role, invitation, client_credentials):
            assert created.status_code == 201, created.text
        pair = "{client_id}:{client_secret}".format(**client_credentials.json())
        service_client = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        ids = {
            "org_id": owner.org_id,
            "user_id": member.user_id,
            "team_id": team.json()["id"],
            "role_id": role.json()["id"],
            "invitation_id": invitation.json()["id"],
        }
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as raw:
            yield Target(client, raw, owner, member, ids, backend, service_client)


# Status per case and backend; the second backend to run a case compares.
RESULTS: dict[str, dict[str, int]] = {}


def record(target: Target, case: str, status: int) -> None:
    seen = RESULTS.setdefault(case, {})
    seen[target.backend] = status
    assert len(set(seen.values())) == 1, f"{case}: different status per backend: {seen}"


def _valid_value(name: str, schema: dict[str, Any], target: Target) -> Any:
    """A value that passes validation, so the hostile one is the only defect."""
    schema = _non_null(schema)
    if schema.get("type") == "array":
        return [_valid_value(name.removesuffix("s"), schema["items"], target)]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if schema.get("format") == "email":
        email = unique_email("hostile")
        target.registered_emails.append(email)
        return email
    if schema.get("format") == "uuid":
        return {"user_id": target.ids["user_id"]}.get(name, SYSTEM_ROLE_IDS["member"])
    if schema.get("format") == "uri":  # https, and nothing listens there (fails fast)
        return f"https://127.0.0.1:1/{secrets.token_hex(4)}"
    if schema.get("format") == "hostname":
        return f"{secrets.token_hex(4)}.example.com"
    if "password" in name:
        return PASSWORD
    if "token" in name:
        return "fmx_" + secrets.token_urlsafe(16)
    return f"Hostile {secrets.token_hex(4)}"


def _baseline(op: Operation, target: Target, *also: str) -> dict[str, Any]:
    assert op.body is not None
    props = op.body.get("properties", {})
    required = set(op.body.get("required", ()))
    if op.name == "POST /api/v1/auth/register":
        required.add("organization_name")  # sign-up needs one way in
    if op.variant == "SamlProviderCreate" and "idp_metadata_xml" not in also:
        required.add("idp_metadata_url")  # one of the metadata's two sources
    return {name: _valid_value(name, props[name], target) for name in sorted(required | set(also))}


def _url(op: Operation, target: Target, **override: str) -> str:
    values = {
        name: override.get(name, target.ids.get(name, str(uuid.uuid4()))) for name in op.path_params
    }
    return op.path.format(**values)


async def _send_json(target: Target, op: Operation, url: str, body: Any) -> httpx.Response:
    # ensure_ascii keeps lone surrogates as \\ud800 escapes, exactly as an attacker sends them.
    return await _send_raw(target, op, url, json.dumps(body).encode())


def _credentials(target: Target, op: Operation) -> dict[str, str]:
    """The owner's bearer token, or a service client's Basic credentials where required."""
    return target.service_client if op.service_client else target.owner.headers


async def _send_raw(target: Target, op: Operation, url: str, content: bytes) -> httpx.Response:
    headers = {**_credentials(target, op), "Content-Type": "application/json"}
    return await target.client.request(op.method, url, content=content, headers=headers)


def assert_refused(response: httpx.Response, context: str) -> dict[str, Any]:
    """A 4xx with a stable error code, the request id, and no traceback."""
    assert 400 <= response.status_code < 500, f"{context}: {response.status_code} {response.text}"
    error: dict[str, Any] = response.json()["error"]
    assert _STABLE_CODE.match(error["code"]), f"{context}: {error}"
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return error


# -- the attacks --------------------------------------------------------------------------


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=lambda op: op.name)
async def test_baseline_bodies_pass_validation(target: Target, op: Operation) -> None:
    """The valid body each attack starts from is not itself refused by validation."""
    response = await _send_json(target, op, _url(op, target), _baseline(op, target))
    assert response.status_code < 500, response.text
    assert response.status_code != 422, f"{op.name}: baseline refused: {response.text}"
    record(target, f"baseline {op.name}", response.status_code)


@pytest.mark.parametrize(
    ("op", "name"), BODY_FIELDS, ids=[f"{op.name} {name}" for op, name in BODY_FIELDS]
)
async def test_hostile_strings_in_body_fields_are_refused(
    target: Target, op: Operation, name: str
) -> None:
    """Control characters and lone surrogates are a 422 naming the field; never a 5xx."""
    assert op.body is not None
    is_array = _non_null(op.body["properties"][name]).get("type") == "array"
    for label, (text, detail_type) in HOSTILE_STRINGS.items():
        body = _baseline(op, target, name)
        body[name] = [text] if is_array else text
        response = await _send_json(target, op, _url(op, target), body)
        context = f"{op.name} {name}={label}"
        record(target, context, response.status_code)
        if label in LINE_BREAKS and name in FREE_TEXT_FIELDS:
            # Accepted as text (what the text means may still be refused: metadata
            # that is not XML is a 422 SSO_INVALID_CONFIGURATION, not a hostile string).
            assert response.status_code < 500, f"{context}: {response.text}"
            assert response.status_code != 422 or (
                response.json()["error"]["code"] != "VALIDATION_ERROR"
            ), f"{context}: {response.text}"
            continue
        error = assert_refused(response, context)
        if op.oauth_style:
            assert (response.status_code, error["code"]) == (400, "INVALID_REQUEST"), context
            continue
        assert response.status_code == 422, context
        assert error["code"] == "VALIDATION_ERROR", context
        assert {"field": name, "type": detail_type} in [
            {"field": d["field"], "type": d["type"]} for d in error["details"]
        ], f"{context}: {error['details']}"


@pytest.mark.parametrize(
    ("op", "name"), BODY_FIELDS, ids=[f"{op.name} {name}" for op, name in BODY_FIELDS]
)
async def test_overlong_and_wrongly_typed_fields_are_refused(
    target: Target, op: Operation, name: str
) -> None:
    """An over-long string or a value of the wrong type is a 422 naming the field."""
    limit = _non_null(op.body["properties"][name]).get("maxLength", 0) if op.body else 0
    overlong = "x" * (limit + 1) if limit >= len(OVERLONG) else OVERLONG
    for label, value in {"overlong": overlong, **WRONG_TYPES}.items():
        body = _baseline(op, target, name)
        body[name] = value
        response = await _send_json(target, op, _url(op, target), body)
        context = f"{op.name} {name}={label}"
        record(target, context, response.status_code)
        error = assert_refused(response, context)
        if op.oauth_style:
            assert (response.status_code, error["code"]) == (400, "INVALID_REQUEST"), context
            continue
        assert error["code"] == "VALIDATION_ERROR", context
        assert any(d["field"].split(".")[0] == name for d in error["details"]), context


def _malformed_bodies(op: Operation) -> dict[str, bytes]:
    first = op.string_fields[0] if op.string_fields else "x"
    padding = 1_048_576 - 64  # just under the default body limit
    return {
        "invalid_utf8": b'{"' + first.encode() + b'": "\xff\xfe\xc3\x28"}',
        "nested_arrays": b"[" * 100_000 + b"]" * 100_000,
        "nested_objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "huge_string": json.dumps({first: "y" * padding}).encode(),
        "huge_array": b'{"' + first.encode() + b'": [' + b"1," * (padding // 2 - 10) + b"1]}",
        "array_body": b"[]",
        "string_body": b'"just a string"',
        "null_body": b"null",
        "nul_in_key": b'{"a\\u0000b": 1}',
        "surrogate_in_key": b'{"\\ud800": 1}',
    }


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=lambda op: op.name)
async def test_malformed_bodies_are_refused(target: Target, op: Operation) -> None:
    """Invalid UTF-8, absurd nesting, bodies near the size limit and non-objects: 4xx."""
    headers = {**_credentials(target, op), "Content-Type": "application/json"}
    for label, content in _malformed_bodies(op).items():
        url = _url(op, target)
        response = await target.raw.request(op.method, url, content=content, headers=headers)
        context = f"{op.name} body={label}"
        record(target, context, response.status_code)
        assert_refused(response, context)


# Times without an offset, or whose UTC instant is outside years 1-9999.
HOSTILE_TIMES = {
    "naive_time": "2026-01-01T00:00:00",
    "before_year_one": quote("0001-01-01T00:00:00+14:00"),
    "after_year_9999": "9999-12-31T23:59:59-14:00",
}


@pytest.mark.parametrize(
    ("op", "name", "fmt"),
    QUERY_PARAMETERS,
    ids=[f"{op.name} {name}" for op, name, _ in QUERY_PARAMETERS],
)
async def test_hostile_query_parameters_are_refused(
    target: Target, op: Operation, name: str, fmt: str | None
) -> None:
    """Every query parameter refuses control characters, bad UTF-8 and huge values: 4xx."""
    values = {**HOSTILE_PARAMETERS, **(HOSTILE_TIMES if fmt == "date-time" else {})}
    for label, value in values.items():
        url = f"{_url(op, target)}?{name}={value}"
        response = await target.client.request(op.method, url, headers=_credentials(target, op))
        context = f"{op.name} ?{name}={label}"
        record(target, context, response.status_code)
        if label in UNDECODABLE and fmt is None and response.status_code == 200:
            continue  # decoded to U+FFFD: a harmless, printable filter value
        assert_refused(response, context)


@pytest.mark.parametrize(
    ("op", "name"), PATH_PARAMETERS, ids=[f"{op.name} {name}" for op, name in PATH_PARAMETERS]
)
async def test_hostile_path_parameters_are_refused(
    target: Target, op: Operation, name: str
) -> None:
    """Every path parameter refuses control characters, bad UTF-8 and huge values: 4xx."""
    for label, value in HOSTILE_PARAMETERS.items():
        url = _url(op, target, **{name: value})
        headers = {**_credentials(target, op), "Content-Type": "application/json"}
        body = b"{}" if op.body is not None else None
        response = await target.client.request(op.method, url, headers=headers, content=body)
        context = f"{op.name} {name}={label}"
        record(target, context, response.status_code)
        assert_refused(response, context)


# -- nothing hostile was kept --------------------------------------------------------------


def _hostile_strings_in(data: Any, path: str = "") -> list[str]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _hostile_strings_in(value, f"{path}.{key}")
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found += _hostile_strings_in(value, f"{path}[{i}]")
    elif isinstance(data, str):
        allowed = "\t\n\r" if path.endswith(".description") else ""
        if any(
            (ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) < 0xE000) and c not in allowed
            for c in data
        ):
            found.append(f"{path}={data!r}")
    return found


async def test_nothing_hostile_was_stored(target: Target) -> None:
    """After the attacks, no stored name, email, description or audit detail holds them."""
    owner, client = target.owner, target.client
    listings = {}
    for what in (
        "",
        "/users?limit=200",
        "/teams",
        "/roles",
        "/invitations",
        "/audit-events?limit=500",
    ):
        response = await client.get(f"{owner.org_url}{what}", headers=owner.headers)
        assert response.status_code == 200, response.text
        listings[what or "/"] = response.json()
    assert _hostile_strings_in(listings) == []
    # Accounts made with the attacks' valid values (sign-ups included) hold nothing hostile.
    for email in target.registered_emails[-20:]:
        response = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        if response.status_code != 200:
            continue
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me = (await client.get("/api/v1/auth/me", headers=headers)).json()
        org = await client.get(f"/api/v1/organizations/{me['organization_id']}", headers=headers)
        assert _hostile_strings_in([me, org.json()]) == [], email
