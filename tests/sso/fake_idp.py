"""A hand-made OpenID provider on 127.0.0.1 that answers the token endpoint with
whatever ID token the test crafted: the way to present forged tokens (alg none,
HS256 keyed with the public key, another audience or issuer, a wrong nonce, expired)
to the real callback, signed or not with keys the test controls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

CLIENT_ID = "forged-client"


@dataclass
class FakeIdp:
    issuer: str
    key: rsa.RSAPrivateKey
    kid: str = "k1"
    id_token: str = ""
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    jwks_fetches: int = 0

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="RS256")
        return {"keys": [jwk]}

    def claims(self, nonce: str, email: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": f"forged-{email}",
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, **headers})


def _handler(idp: FakeIdp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _json(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                self._json(
                    {
                        "issuer": idp.issuer,
                        "authorization_endpoint": f"{idp.issuer}/authorize",
                        "token_endpoint": f"{idp.issuer}/token",
                        "jwks_uri": f"{idp.issuer}/jwks",
                        "response_types_supported": ["code"],
                        "code_challenge_methods_supported": ["S256"],
                    }
                )
            elif self.path == "/jwks":
                idp.jwks_fetches += 1
                self._json(idp.jwks())
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            idp.token_requests.append(parse_qs(self.rfile.read(length).decode()))
            self._json({"id_token": idp.id_token, "access_token": "at", "token_type": "Bearer"})

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_fake_idp() -> Iterator[FakeIdp]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    idp = FakeIdp(issuer="", key=key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(idp))
    idp.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
