"""405 and OPTIONS name every method a path supports.

Starlette answers a wrong method with the ``Allow`` of the first route whose path
matched, so ``PATCH /organizations/{id}`` listed only ``GET``. Here ``Allow`` is the
union over every route whose pattern matches the requested path (plus ``OPTIONS``,
which every existing path answers with 204 and the same ``Allow``), and the body is
our error with code ``METHOD_NOT_ALLOWED``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts

from faultmaven_auth.errors import error_body

# The order RFC 9110 lists them in; clients only need the set, people read the order.
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path``, and OPTIONS, in RFC order."""
    methods = {"OPTIONS"}
    for route in iter_route_contexts(app.routes):
        pattern = getattr(route, "path_regex", None)
        if route.methods and pattern is not None and pattern.match(path):
            methods |= route.methods
    return sorted(methods, key=lambda m: (*_METHOD_ORDER, m).index(m))


async def _method_not_allowed(request: Request, _: Exception) -> Response:
    allow = ", ".join(allowed_methods(request.app, request.url.path))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    return JSONResponse(
        error_body("METHOD_NOT_ALLOWED", f"{request.method} is not allowed here; allowed: {allow}"),
        status_code=405,
        headers={"Allow": allow},
    )


def install_method_handling(app: FastAPI) -> None:
    # A status-code handler takes precedence over the HTTPException class handler.
    app.add_exception_handler(405, _method_not_allowed)
