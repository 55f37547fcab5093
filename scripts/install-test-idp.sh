#!/usr/bin/env bash
# The real OpenID provider the SSO tests log in through: the npm package oidc-provider
# (pinned in tests/sso/idp/package-lock.json). Installs with `npm ci` only when
# node_modules is missing or older than the lock file, so repeated runs cost nothing.
set -euo pipefail

dir="$(cd "$(dirname "$0")/.." && pwd)/tests/sso/idp"
stamp="$dir/node_modules/.installed"

if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
  else
    echo "npm (Node.js 18 or 20) is needed for the SSO tests' OpenID provider" >&2
    exit 1
  fi
fi
if [[ -f $stamp && $stamp -nt $dir/package-lock.json ]]; then
  exit 0
fi
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
touch "$stamp"
