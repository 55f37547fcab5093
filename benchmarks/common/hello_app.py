"""The hello-world reference: a bare FastAPI app under the service's uvicorn settings.

The ratio "our endpoint / hello-world" on the same server, workers and load generator
says how much work a request does beyond what the framework and server cost anyway.

    python -m benchmarks.common.hello_app --port 8001 --workers 2
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI


def create_app() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same options as `faultmaven-auth serve` (cli.py): no access log, no proxy
    # headers, no server header, uvicorn's default loop and HTTP parser.
    uvicorn.run(
        "benchmarks.common.hello_app:create_app",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
