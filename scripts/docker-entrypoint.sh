#!/bin/sh
# Container entry point: run the given command (default: faultmaven-auth serve).
#
# With several workers, prometheus_client writes each worker's values to files in
# PROMETHEUS_MULTIPROC_DIR and /metrics sums every file there. A volume kept across
# container restarts (a Kubernetes emptyDir survives them) would still hold the files of
# the previous container's workers, whose live gauges would then be summed forever, so
# they are removed before the service starts. Only prometheus_client's own *.db files
# are touched, never anything else in the directory.
set -eu

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -type f -name '*.db' -delete
fi

exec "$@"
