# shellcheck shell=bash disable=SC2034
# Local model lifecycle (scripts/local_llm.py under the xllamacpp venv).
#
#   llm_start [PORT [THREADS]]
#                      start (or reuse a healthy instance) and wait until ready;
#                      THREADS defaults to $GRADELAB_LLM_THREADS, else 2
#   llm_stop [PORT]    stop the instance recorded in $CACHE/run/llm-PORT.pid
#   llm_status [PORT]  print whether it is up
#
# Pid file and log: $CACHE/run/llm-PORT.{pid,log}. After llm_start,
# LLM_STARTED_HERE=1 if this shell started the process (0 if it reused one),
# so a caller's trap can stop only what it started.

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LLM_START_TIMEOUT=120
LLM_STARTED_HERE=0

_llm_pidfile() { printf '%s/llm-%s.pid' "$RUN_DIR" "$1"; }
_llm_logfile() { printf '%s/llm-%s.log' "$RUN_DIR" "$1"; }

# _llm_pid PORT -> pid of our launcher for PORT if it is alive, else nothing.
_llm_pid() {
  local pidf pid
  pidf=$(_llm_pidfile "$1")
  [[ -f "$pidf" ]] || return 1
  pid=$(<"$pidf")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # Guard against a recycled pid: it must still be our launcher.
  if [[ -r "/proc/$pid/cmdline" ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'local_llm\.py'; then
    printf '%s' "$pid"
  else
    return 1
  fi
}

# _pid_alive PID: running and not a zombie (kill -0 succeeds on zombies).
_pid_alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$st" && "${st:0:1}" != Z ]]
}

_llm_ready() { [[ "$(http_status "http://127.0.0.1:$1/v1/models")" == 200 ]]; }

llm_status() {
  local port=${1:-${GRADELAB_LLM_PORT:-8765}} pid=""
  pid=$(_llm_pid "$port") || true
  if _llm_ready "$port"; then
    log "local model: ready on http://127.0.0.1:$port/v1${pid:+ (pid $pid)}"
  elif [[ -n "$pid" ]]; then
    log "local model: loading (pid $pid), log $(_llm_logfile "$port")"
    return 1
  else
    log "local model: not running on port $port"
    return 1
  fi
}

llm_start() {
  local port=${1:-${GRADELAB_LLM_PORT:-8765}} threads=${2:-${GRADELAB_LLM_THREADS:-2}}
  local t0 pid="" logf pidf deadline code
  t0=$(now)
  logf=$(_llm_logfile "$port")
  pidf=$(_llm_pidfile "$port")
  mkdir -p "$RUN_DIR"
  LLM_STARTED_HERE=0

  if _llm_ready "$port"; then
    log "[llm] reusing the healthy model server on 127.0.0.1:$port ($(elapsed "$t0")s)"
    return 0
  fi

  if pid=$(_llm_pid "$port"); then
    log "[llm] a model server (pid $pid) is still loading on port $port; waiting for it"
  else
    if [[ ! -x "$VENV_DIR/bin/python" || ! -f "$LLM_MODEL_FILE" ]]; then
      printf 'error: no venv at %s or no model at %s: run ./gradelab install\n' "$VENV_DIR" "$LLM_MODEL_FILE" >&2
      return 1
    fi
    code=$(http_status "http://127.0.0.1:$port/v1/models")
    if [[ "$code" != 000 ]]; then
      printf 'error: port %s is taken by something else (GET /v1/models -> %s); set GRADELAB_LLM_PORT\n' \
        "$port" "$code" >&2
      return 1
    fi
    # setsid: its own session, so a Ctrl-C aimed at us is not delivered to it
    # directly; our trap stops it.
    GRADELAB_LLM_THREADS=$threads setsid "$VENV_DIR/bin/python" "$GRADELAB_SCRIPTS/local_llm.py" \
      "$LLM_MODEL_FILE" "$port" </dev/null >"$logf" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pidf"
    LLM_STARTED_HERE=1
  fi

  deadline=$(($(date +%s) + LLM_START_TIMEOUT))
  until _llm_ready "$port"; do
    if ! _pid_alive "$pid"; then
      wait "$pid" 2>/dev/null || true
      rm -f "$pidf"
      LLM_STARTED_HERE=0
      printf 'error: the local model server exited while starting; last lines of %s:\n' "$logf" >&2
      tail -n 30 "$logf" >&2 || true
      return 1
    fi
    if (($(date +%s) >= deadline)); then
      printf 'error: the local model server was not ready after %ss; last lines of %s:\n' \
        "$LLM_START_TIMEOUT" "$logf" >&2
      tail -n 30 "$logf" >&2 || true
      llm_stop "$port"
      return 1
    fi
    sleep 0.25
  done
  log "[llm] model server ready on http://127.0.0.1:$port/v1 (pid $pid, $threads threads, log $logf) ($(elapsed "$t0")s)"
}

llm_stop() {
  local port=${1:-${GRADELAB_LLM_PORT:-8765}} pid i
  if ! pid=$(_llm_pid "$port"); then
    rm -f "$(_llm_pidfile "$port")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    _pid_alive "$pid" || break
    sleep 0.25
  done
  if _pid_alive "$pid"; then
    warn "local model server (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Reap it if it is our child; harmless otherwise.
  wait "$pid" 2>/dev/null || true
  rm -f "$(_llm_pidfile "$port")"
  LLM_STARTED_HERE=0
  log "[llm] model server on port $port stopped"
}
