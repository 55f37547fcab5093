#!/usr/bin/env bash
# `make monitor`: Prometheus and Alertmanager on 127.0.0.1 for the service of `make run`.
#
# Prometheus scrapes the service (job auth-service, SERVICE_ADDRESS, default
# 127.0.0.1:8000) with the project's rule files (monitoring/prometheus/rules/*.yml, read in
# place, so an edit shows after a reload: curl -X POST <prometheus>/-/reload) and sends
# alerts to a local Alertmanager that keeps them for viewing (no notifications leave the
# machine). Data lives in a temporary folder removed on exit; Ctrl-C stops everything.
#
# Settings (environment): SERVICE_ADDRESS, PROMETHEUS_PORT (9090), ALERTMANAGER_PORT (9093),
# SCRAPE_INTERVAL (5s), METRICS_BEARER_TOKEN (sent to /metrics when the service needs it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

service=${SERVICE_ADDRESS:-127.0.0.1:8000}
prometheus_port=${PROMETHEUS_PORT:-9090}
alertmanager_port=${ALERTMANAGER_PORT:-9093}
scrape_interval=${SCRAPE_INTERVAL:-5s}

find_binary() {
  local name
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  echo "monitor: none of [$*] found; run: make system-deps" >&2
  return 1
}
prometheus=$(find_binary prometheus)
# Debian names it prometheus-alertmanager; upstream, alertmanager.
alertmanager=$(find_binary prometheus-alertmanager alertmanager)

work=$(mktemp -d "${TMPDIR:-/tmp}/faultmaven-monitor.XXXXXX")
pids=()
cleanup() {
  trap - EXIT INT TERM
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
  echo "monitor: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

authorization=""
if [[ -n ${METRICS_BEARER_TOKEN:-} ]]; then
  (umask 077 && printf '%s' "$METRICS_BEARER_TOKEN" >"$work/metrics-token")
  authorization="    authorization:
      credentials_file: $work/metrics-token"
fi

cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: $scrape_interval
  evaluation_interval: $scrape_interval
rule_files:
  - $root/monitoring/prometheus/rules/*.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$alertmanager_port"]
scrape_configs:
  - job_name: auth-service
$authorization
    static_configs:
      - targets: ["$service"]
  - job_name: alertmanager
    static_configs:
      - targets: ["127.0.0.1:$alertmanager_port"]
EOF

# Same grouping as monitoring/alertmanager/alertmanager.yml; one receiver that sends
# nothing, so alerts are visible in the UI and with amtool but never leave the machine.
cat >"$work/alertmanager.yml" <<EOF
route:
  receiver: local
  group_by: [alertname, cluster, service]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 12h
receivers:
  - name: local
EOF

mkdir -p "$work/prometheus-data" "$work/alertmanager-data"
"$alertmanager" \
  --config.file="$work/alertmanager.yml" \
  --storage.path="$work/alertmanager-data" \
  --web.listen-address="127.0.0.1:$alertmanager_port" \
  --cluster.listen-address= \
  --log.level=warn >"$work/alertmanager.log" 2>&1 &
pids+=($!)
"$prometheus" \
  --config.file="$work/prometheus.yml" \
  --storage.tsdb.path="$work/prometheus-data" \
  --web.listen-address="127.0.0.1:$prometheus_port" \
  --web.enable-lifecycle \
  --log.level=warn >"$work/prometheus.log" 2>&1 &
pids+=($!)

wait_ready() {
  local name=$1 url=$2 log=$3 pid=$4 i
  for i in $(seq 1 100); do
    if curl -fsS -o /dev/null "$url/-/ready" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "monitor: $name exited:" >&2
      cat "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "monitor: $name not ready after 10 s:" >&2
  cat "$log" >&2
  return 1
}
wait_ready Alertmanager "http://127.0.0.1:$alertmanager_port" "$work/alertmanager.log" "${pids[0]}"
wait_ready Prometheus "http://127.0.0.1:$prometheus_port" "$work/prometheus.log" "${pids[1]}"

cat <<EOF

  Prometheus:    http://127.0.0.1:$prometheus_port   (targets: /targets, alerts: /alerts)
  Alertmanager:  http://127.0.0.1:$alertmanager_port
  Scraping:      http://$service/metrics as job auth-service (start it with: make run)
  Rules:         $root/monitoring/prometheus/rules/*.yml
  Data and logs: $work (removed on exit)
  Ctrl-C stops both.

EOF

# Until Ctrl-C, or until either process dies (then stop the other one too).
set +e
wait -n "${pids[@]}"
status=$?
echo "monitor: a process exited ($status); logs follow" >&2
tail -n 20 "$work"/*.log >&2
exit "$status"
