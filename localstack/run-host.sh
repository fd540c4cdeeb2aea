#!/usr/bin/env bash
# Run LocalStack (S3 + SQS) as a plain host process, without Docker: the LocalStack lane of the tests.
#
#   localstack/run-host.sh install                      create/refresh the Python 3.13 venv (idempotent)
#   localstack/run-host.sh start  --port N --state-dir D install if needed, start, wait until healthy
#   localstack/run-host.sh stop   --state-dir D          stop the instance started with that state dir (by PID)
#   localstack/run-host.sh status --port N               print LocalStack's health JSON
#
# Why these settings (see ../shared/PLATFORM-NOTES.md): LocalStack 2026.3 needs Python 3.13 and a few pins;
# OVERRIDE_IN_DOCKER=0 keeps it from writing to /etc and /var/lib; GATEWAY_SERVER=hypercorn honours
# GATEWAY_LISTEN=127.0.0.1:N (the default server binds 0.0.0.0); DNS_ADDRESS=0 keeps its DNS server (port 53,
# all interfaces) off; S3_SKIP_SIGNATURE_VALIDATION=0 makes
# tampered/expired presigned URLs fail with 403 as on AWS. Everything it writes stays under the state dir.
#
# Environment: LOCALSTACK_VENV (default <repo>/.run/localstack-venv), LOCALSTACK_PYTHON (a python3.13),
# LOCALSTACK_START_TIMEOUT (seconds, default 120).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${LOCALSTACK_VENV:-$ROOT/.run/localstack-venv}
PINS=("localstack-core[runtime]==2026.3.0" "cbor2<6" "pyopenssl<25" "cryptography<45" "service_identity")
STAMP="$VENV/.tmi-installed"
START_TIMEOUT=${LOCALSTACK_START_TIMEOUT:-120}

die() { echo "run-host.sh: $*" >&2; exit 1; }

find_python313() {
    local candidate
    for candidate in "${LOCALSTACK_PYTHON:-}" "$(command -v python3.13 || true)"; do
        if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    local pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    for candidate in "$pyenv_root"/versions/3.13*/bin/python3.13; do
        [[ -x "$candidate" ]] && { echo "$candidate"; return 0; }
    done
    if command -v pyenv >/dev/null 2>&1 || [[ -x "$pyenv_root/bin/pyenv" ]]; then
        local pyenv_bin; pyenv_bin=$(command -v pyenv || echo "$pyenv_root/bin/pyenv")
        echo "run-host.sh: installing Python 3.13 with pyenv (one time)" >&2
        "$pyenv_bin" install -s 3.13 >&2
        for candidate in "$pyenv_root"/versions/3.13*/bin/python3.13; do
            [[ -x "$candidate" ]] && { echo "$candidate"; return 0; }
        done
    fi
    return 1
}

cmd_install() {
    mkdir -p "$(dirname "$VENV")"
    # Several test sessions may start at once: one installs, the others wait for it (lock in a subshell,
    # so the lock's file descriptor is not inherited by LocalStack).
    (
        flock 9
        local want; want=$(printf '%s\n' "${PINS[@]}")
        if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
            exit 0
        fi
        local py; py=$(find_python313) || die "Python 3.13 not found (set LOCALSTACK_PYTHON, or install pyenv)"
        echo "run-host.sh: creating $VENV with $py and installing LocalStack (a few minutes the first time)" >&2
        [[ -x "$VENV/bin/python" ]] || "$py" -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" >&2 || true
        "$VENV/bin/python" -m pip install -q "${PINS[@]}" 2>&1 | grep -v "is ignored" >&2 || true
        "$VENV/bin/python" -c 'import localstack.runtime.main' || die "LocalStack did not install into $VENV"
        echo "$want" >"$STAMP"
    ) 9>"$VENV.lock"
}

parse_args() {
    PORT=""; STATE_DIR=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --port) PORT=$2; shift 2 ;;
            --state-dir) STATE_DIR=$2; shift 2 ;;
            *) die "unknown argument $1" ;;
        esac
    done
}

healthy() {
    # Both services report "available" (not yet started lazily) or "running".
    local body
    body=$(curl -fsS --max-time 2 "http://127.0.0.1:$1/_localstack/health" 2>/dev/null) || return 1
    "$VENV/bin/python" -c '
import json, sys
try:
    services = json.loads(sys.argv[1]).get("services", {})
except ValueError:
    sys.exit(1)
sys.exit(0 if all(services.get(s) in {"available", "running"} for s in ("s3", "sqs")) else 1)' "$body"
}

cmd_start() {
    [[ -n "$PORT" && -n "$STATE_DIR" ]] || die "start needs --port and --state-dir"
    cmd_install
    mkdir -p "$STATE_DIR/fs" "$STATE_DIR/tmp"
    local pidfile="$STATE_DIR/localstack.pid" log="$STATE_DIR/localstack.log"
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        die "already running with PID $(cat "$pidfile") (state dir $STATE_DIR)"
    fi
    # cwd is the state dir: from the repository root, ./localstack (this folder) would shadow the package.
    (
        cd "$STATE_DIR"
        export OVERRIDE_IN_DOCKER=0 GATEWAY_LISTEN="127.0.0.1:$PORT" GATEWAY_SERVER=hypercorn \
            LOCALSTACK_HOST="127.0.0.1:$PORT" SERVICES=s3,sqs S3_SKIP_SIGNATURE_VALIDATION=0 \
            SQS_ENDPOINT_STRATEGY=path FILESYSTEM_ROOT="$STATE_DIR/fs" TMPDIR="$STATE_DIR/tmp" \
            DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 PERSISTENCE=0 DNS_ADDRESS=0
        exec setsid "$VENV/bin/python" -m localstack.runtime.main >"$log" 2>&1 </dev/null
    ) &
    echo $! >"$pidfile"
    local deadline=$((SECONDS + START_TIMEOUT))
    until healthy "$PORT"; do
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            tail -n 40 "$log" >&2
            die "LocalStack exited during start-up (log: $log)"
        fi
        if ((SECONDS > deadline)); then
            tail -n 40 "$log" >&2
            cmd_stop
            die "LocalStack not healthy after ${START_TIMEOUT}s (log: $log)"
        fi
        sleep 0.5
    done
    echo "http://127.0.0.1:$PORT"
}

cmd_stop() {
    [[ -n "$STATE_DIR" ]] || die "stop needs --state-dir"
    local pidfile="$STATE_DIR/localstack.pid"
    [[ -f "$pidfile" ]] || return 0
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        # setsid made the PID a process-group leader: stop the group it leads (its own children only).
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

cmd_status() {
    [[ -n "$PORT" ]] || die "status needs --port"
    curl -fsS --max-time 2 "http://127.0.0.1:$PORT/_localstack/health"
    echo
}

action=${1:-}; shift || true
parse_args "$@"
case "$action" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) die "usage: $0 install|start|stop|status [--port N] [--state-dir DIR]" ;;
esac
