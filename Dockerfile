# syntax=docker/dockerfile:1
# FaultMaven Auth service image (docs/deployment.md).
#
#   docker build -t faultmaven-auth .
#   docker run --rm -e DATABASE_URL=... faultmaven-auth faultmaven-auth migrate   # once per release
#   docker run -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... faultmaven-auth
#
# Migrations are a separate command on purpose: compose runs them in a one-shot service,
# Kubernetes in an initContainer, so replicas never race to migrate while serving.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- builder: the project and every dependency as wheels ------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime: slim Python, wheels installed, no compiler, non-root ---------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json

RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels faultmaven-auth \
    && groupadd --system --gid 10001 faultmaven \
    && useradd --system --uid 10001 --gid faultmaven --home-dir /app --shell /usr/sbin/nologin faultmaven \
    && mkdir -p /app/var /run/prometheus-multiproc \
    && chown -R faultmaven:faultmaven /app /run/prometheus-multiproc

COPY --chmod=0755 scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# Liveness only (no dependency calls); readiness is /ready, used by orchestrators.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# Clears a PROMETHEUS_MULTIPROC_DIR volume left over from an earlier start, then execs.
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["faultmaven-auth", "serve", "--host", "0.0.0.0"]
