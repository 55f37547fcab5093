#!/usr/bin/env bash
# Debian packages the test suite runs for real: prometheus and promtool (package
# prometheus), alertmanager and amtool (package prometheus-alertmanager), xmlsec1 (SAML
# signatures: pysaml2 signs and verifies through it, in the service and the test IdP); with the
# argument "bench", also the load generator wrk for `make bench` (benchmarks/load drives it
# with Lua scripts; Debian's wrk 4.x embeds LuaJIT).
# Installs only what is missing. Services shipped by these packages are not started:
# tests start their own instances on 127.0.0.1.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)
if [[ ${1:-} == bench ]]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
fi

if ((${#missing[@]} == 0)); then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages (${missing[*]}) and no apt-get to install them" >&2
  exit 1
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# policy-rc.d 101: "do not start services" while the packages install.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
  $SUDO chmod +x $policy
  created_policy=1
fi
cleanup() { if [[ $created_policy == 1 ]]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
