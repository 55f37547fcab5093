"""Schemathesis over the whole OpenAPI document, on both backends.

Every operation gets generated requests (valid ones, then invalid ones) from an
authenticated owner, in-process over ASGI; every answer must be a non-5xx with a
documented status, a documented content type and a body matching its schema, and
invalid input must be refused. Failures are collected over all operations and
reported together (one line per distinct failure), so one run shows everything.

Authentication follows each operation's ``security`` in the document: the owner's
bearer token, or the HTTP Basic credentials of a service client. Path ids are drawn
from a mix of real ids (the owner's organization, a member, a team, a custom role, an
invitation) and generated ones, so both the "found" and the "not found / other
tenant" branches run. Operations that end a session or the organization run on a
throwaway session or organization, so the run keeps its own credentials.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from faultmaven_auth.app import create_app
from faultmaven_auth.config import Settings
from tests.conftest import PASSWORD, SYSTEM_ROLE_IDS, unique_email

# -- the budget -------------------------------------------------------------------------
# Examples per operation and generation mode. About 40 operations x (15 + 6) examples
# is ~800 requests, 15-40 s per backend on one core. Generation is
# derandomized (a fixed seed from the test's name), so a failure reproduces on every
# run; no example database, no shrinking (a report lists the failing request as sent).
POSITIVE_EXAMPLES = 15
NEGATIVE_EXAMPLES = 6


def hypothesis_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]

# Operations that would end the run's own session or organization.
SESSION_ENDING = {("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/organizations/{org_id}")}


@dataclass
class Credentials:
    org_id: str
    access_token: str


@dataclass
class Target:
    """The run's owner, its fixtures, and a way to make throwaway sessions."""

    http: asgi.ASGIClient
    owner: Credentials
    email: str
    basic: str
    ids: dict[str, list[str]] = field(default_factory=dict)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        headers = self.bearer(token) if token else {}
        response = self.http.post(path, json=body, headers=headers)
        assert response.status_code in (200, 201), response.text
        data: dict[str, Any] = response.json()
        return data

    def sign_up(self, email: str | None = None) -> Credentials:
        """A new organization and its owner's session (the run's own, or a throwaway)."""
        email = email or unique_email("fuzz")
        registered = self.post(
            "/api/v1/auth/register",
            {
                "organization_name": "Fuzz Corp",
                "email": email,
                "password": PASSWORD,
                "full_name": "Fuzz Owner",
            },
        )
        tokens = self.post("/api/v1/auth/login", {"email": email, "password": PASSWORD})
        return Credentials(registered["organization"]["id"], tokens["access_token"])

    def new_session(self) -> Credentials:
        tokens = self.post("/api/v1/auth/login", {"email": self.email, "password": PASSWORD})
        return Credentials(self.owner.org_id, tokens["access_token"])


def build_target(http: asgi.ASGIClient) -> Target:
    target = Target(http, Credentials("", ""), email=unique_email("owner"), basic="")
    target.owner = target.sign_up(target.email)
    token, org = target.owner.access_token, f"/api/v1/organizations/{target.owner.org_id}"
    member = target.post(
        f"{org}/users",
        {
            "email": unique_email("member"),
            "password": PASSWORD,
            "full_name": "Member Person",
            "role_ids": [SYSTEM_ROLE_IDS["member"]],
        },
        token,
    )
    team = target.post(f"{org}/teams", {"name": "Fuzzers"}, token)
    role = target.post(f"{org}/roles", {"name": "auditor", "permissions": ["audit:read"]}, token)
    invitation = target.post(
        f"{org}/invitations",
        {"email": unique_email("invitee"), "role_id": SYSTEM_ROLE_IDS["viewer"]},
        token,
    )
    client = target.post(f"{org}/service-clients", {"name": "fuzz"}, token)
    secret = f"{client['client_id']}:{client['client_secret']}".encode()
    target.basic = "Basic " + base64.b64encode(secret).decode()
    target.ids = {
        "org_id": [target.owner.org_id],
        "user_id": [member["id"]],
        "team_id": [team["id"]],
        "role_id": [role["id"], SYSTEM_ROLE_IDS["member"]],
        "invitation_id": [invitation["id"]],
    }
    return target


def id_choices(target: Target, names: list[str]) -> list[dict[str, str]]:
    """Every mix of real ids and generated ones (a name left out is generated)."""
    combos: list[dict[str, str]] = [{}]
    for name in names:
        real = target.ids.get(name, [])
        combos = [{**combo, name: value} for combo in combos for value in real] + combos
    return combos


@dataclass
class Findings:
    failures: dict[str, str] = field(default_factory=dict)
    calls: int = 0

    def record(self, case: schemathesis.Case, error: FailureGroup | Failure) -> None:
        found = error.exceptions if isinstance(error, FailureGroup) else [error]
        sent = f"path {case.path_parameters} query {case.query} body {case.body!r}"
        for failure in found:
            key = f"{case.operation.label}: {failure.title}"
            detail = " | ".join(failure.message.strip().splitlines()[:3])
            self.failures.setdefault(key, f"{detail[:300]}\n    sent: {sent[:500]}")


@contextmanager
def in_process(settings_: Settings) -> Iterator[tuple[schemathesis.BaseSchema, Target]]:
    """A fresh app on this backend, its lifespan on Schemathesis' own event loop."""
    app = create_app(settings_, configure_logs=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        with asgi.get_client(app) as http:
            yield schema, build_target(http)
    finally:
        asgi.shutdown_lifespans()


def run_operation(
    operation: schemathesis.APIOperation,
    target: Target,
    document: dict[str, Any],
    findings: Findings,
) -> None:
    security = document["paths"][operation.path][operation.method].get("security", [])
    schemes = {name for requirement in security for name in requirement}
    names = [p.name for p in operation.path_parameters]
    key = (operation.method.upper(), operation.path)

    def call(case: schemathesis.Case, checks: list[Any]) -> None:
        credentials = target.owner
        if key in SESSION_ENDING:
            ending_own = case.path_parameters.get("org_id") == target.owner.org_id
            credentials = target.sign_up() if ending_own else target.new_session()
            if ending_own:
                case.path_parameters["org_id"] = credentials.org_id
        headers: dict[str, str] = {}
        if "bearerAuth" in schemes:
            headers = target.bearer(credentials.access_token)
        elif "serviceClientBasic" in schemes:
            headers = {"Authorization": target.basic}
        findings.calls += 1
        try:
            case.call_and_validate(session=target.http, headers=headers, checks=checks)
        except (FailureGroup, Failure) as error:
            findings.record(case, error)

    for mode, examples, checks in (
        (schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES, POSITIVE_CHECKS),
        (schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES, NEGATIVE_CHECKS),
    ):
        # One strategy per mix of ids, built once: Schemathesis builds a strategy from
        # the schema each time it is asked, which a flatmap would do per example.
        strategy = st.one_of(
            [
                operation.as_strategy(generation_mode=mode, path_parameters=fixed)
                for fixed in id_choices(target, names)
            ]
        )
        try:
            explore(strategy, examples, lambda case, checks=checks: call(case, checks))
        except Unsatisfiable:
            # Nothing in the operation can be made invalid (GET /health): no negative run.
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label


def explore(
    strategy: st.SearchStrategy[schemathesis.Case],
    examples: int,
    call: Callable[[schemathesis.Case], None],
) -> None:
    @hypothesis_settings(examples)
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        call(case)

    run()


@pytest.mark.backends
def test_schemathesis_finds_no_errors_or_schema_violations(
    backend_settings: Settings, backend: str
) -> None:
    """No 5xx, no undocumented status or content type, no body off its schema."""
    started = time.perf_counter()
    findings = Findings()
    with in_process(backend_settings) as (schema, target):
        document = schema.raw_schema
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 38
        for operation in operations:
            run_operation(operation, target, document, findings)
    elapsed = time.perf_counter() - started
    print(f"schemathesis on {backend}: {findings.calls} calls in {elapsed:.1f} s")
    report = "\n".join(f"- {key}\n    {text}" for key, text in sorted(findings.failures.items()))
    assert not findings.failures, f"{len(findings.failures)} distinct failures:\n{report}"
