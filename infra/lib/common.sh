# Shared helpers of infra/run.
STACK_ENV="$AC_DATA_DIR/stack.env"
LOG_DIR="$AC_DATA_DIR/logs"
RUN_DIR="$AC_DATA_DIR/run"
mkdir -p "$AC_DATA_DIR" "$LOG_DIR" "$RUN_DIR"

say() { printf '\033[1m[infra]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31m[infra] erreur :\033[0m %s\n' "$*" >&2; exit 1; }

# A port nobody listens on, on 127.0.0.1 (never a hard-coded well-known port).
free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

# Whether nobody listens on PORT of 127.0.0.1.
port_free() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# wait_for NAME SECONDS COMMAND...: retries COMMAND until it succeeds.
wait_for() {
  local name="$1" limit="$2"; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      # The end of its log on the error output: CI deletes the data directory afterwards.
      [ -s "$LOG_DIR/$name.log" ] && tail -n 20 "$LOG_DIR/$name.log" >&2
      die "$name n'est pas prêt après ${limit}s (journal : $LOG_DIR/$name.log)"
    fi
    sleep 0.2
  done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# A random secret for the local stack, kept in the data dir only.
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

pid_alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# start_bg NAME COMMAND...: runs COMMAND in the background, logging to LOG_DIR/NAME.log.
start_bg() {
  local name="$1"; shift
  nohup "$@" >"$LOG_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

stop_bg() {
  local name="$1"
  if pid_alive "$name"; then
    local pid; pid="$(cat "$RUN_DIR/$name.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/$name.pid"
}
