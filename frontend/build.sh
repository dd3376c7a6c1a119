#!/usr/bin/env bash
# Builds the web app into frontend/dist/ (served by the GradeLab server at `/`).
#
# Needs Debian's rustc-web 1.96 toolchain (rust-toolchain.toml points at /usr);
# installs it with apt when missing and running as root. Installs wasm-bindgen-cli,
# at exactly the version in Cargo.lock, under $GRADELAB_CACHE/bin, and binaryen's
# wasm-opt 132 from npm under $GRADELAB_CACHE/npm (Debian's binaryen 108 breaks the
# output; without npm the wasm is left unoptimised). Idempotent.
#
# Pre-compresses dist/ for the server: with zopfli when it is installed (or can be, with
# apt as root), a gzip stream about 4 % smaller than gzip -9's. Prints the wasm's size, raw
# and gzipped (-9), and fails when it is over the 200 KiB gzipped budget (issue 8; only a
# warning when wasm-opt could not be had).
#
# Environment: GRADELAB_CACHE (default ~/.cache/gradelab), CARGO_TARGET_DIR
# (default $GRADELAB_CACHE/frontend-target).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${GRADELAB_CACHE:-$HOME/.cache/gradelab}"
target_dir="${CARGO_TARGET_DIR:-$cache/frontend-target}"
dist="$here/dist"
crate=gradelab_web
debian_rust=1.96.0+dfsg1-1~deb12u2

log() { printf '==> %s\n' "$*" >&2; }

ensure_debian_toolchain() {
  if [[ -x /usr/bin/rustc && -e /usr/bin/rust-lld && -d /usr/lib/rustlib/src/rust/library ]] &&
    /usr/bin/rustc --version | grep -q '^rustc 1\.96\.'; then
    return
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    echo "error: needs Debian's rustc-web $debian_rust, rust-web-src and lld-22 (apt, as root)" >&2
    exit 1
  fi
  log "installing Debian's rustc-web $debian_rust (std for wasm is rebuilt from its sources)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    "rustc-web=$debian_rust" "cargo-web=$debian_rust" "rust-web-src=$debian_rust" \
    "libstd-rust-web-dev=$debian_rust" "rust-web-llvm=$debian_rust" lld-22
}

# The wasm-bindgen version the app links against: the CLI must match it exactly.
locked_wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { found = 1; next }
       found && /^version = / { gsub(/"/, "", $3); print $3; exit }' "$here/Cargo.lock"
}

ensure_wasm_bindgen() {
  local want have=""
  want="$(locked_wasm_bindgen_version)"
  if [[ -z $want ]]; then
    echo "error: no wasm-bindgen in $here/Cargo.lock" >&2
    exit 1
  fi
  wasm_bindgen="$cache/bin/wasm-bindgen"
  if [[ -x $wasm_bindgen ]]; then
    have="$("$wasm_bindgen" --version | awk '{ print $2 }')"
  fi
  if [[ $have == "$want" ]]; then
    return
  fi
  log "installing wasm-bindgen-cli $want into $cache/bin (takes a few minutes, once)"
  mkdir -p "$cache"
  # Outside frontend/, so the host toolchain builds it, without the wasm config.
  # Not --locked: its lockfile pins a crate version the registry here lacks.
  (cd "$cache" && env -u RUSTUP_TOOLCHAIN -u CARGO_TARGET_DIR -u CARGO_BUILD_TARGET \
    cargo install wasm-bindgen-cli --version "=$want" --root "$cache" --force)
}

# binaryen's wasm-opt, version 132 (npm package `binaryen`); empty when it cannot be had.
binaryen_version=132.0.0
ensure_wasm_opt() {
  wasm_opt="$cache/npm/node_modules/.bin/wasm-opt"
  if [[ -x $wasm_opt ]] && "$wasm_opt" --version | grep -q "version ${binaryen_version%%.*}"; then
    return
  fi
  if ! command -v npm >/dev/null; then
    log "npm not found: skipping wasm-opt (the wasm is about 3 % larger gzipped)"
    wasm_opt=""
    return
  fi
  log "installing binaryen $binaryen_version (wasm-opt) into $cache/npm"
  mkdir -p "$cache/npm"
  npm install --prefix "$cache/npm" --no-audit --no-fund --loglevel=error "binaryen@$binaryen_version"
}

# zopfli (Debian package) for the pre-compressed copies; empty when it cannot be had.
ensure_zopfli() {
  zopfli="$(command -v zopfli || true)"
  if [[ -n $zopfli ]]; then
    return
  fi
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zopfli >/dev/null 2>&1; then
    zopfli="$(command -v zopfli || true)"
  fi
  if [[ -z $zopfli ]]; then
    log "zopfli not found: pre-compressing with gzip -9 (about 4 % larger)"
  fi
}

ensure_debian_toolchain
ensure_wasm_bindgen
ensure_wasm_opt
ensure_zopfli

log "building $crate (release, wasm32)"
(cd "$here" && CARGO_TARGET_DIR="$target_dir" cargo build --release)

log "generating JS bindings into $dist"
rm -rf "$dist"
mkdir -p "$dist"
"$wasm_bindgen" --target web --no-typescript --remove-name-section --remove-producers-section \
  --out-name "$crate" --out-dir "$dist" \
  "$target_dir/wasm32-unknown-unknown/release/gradelab-web.wasm"
cp "$here/index.html" "$here/style.css" "$dist/"

wasm="$dist/${crate}_bg.wasm"
if [[ -n $wasm_opt ]]; then
  log "optimising with $("$wasm_opt" --version)"
  # The features rustc 1.96 enables for wasm32-unknown-unknown. The exports dropped
  # first are wasm-streams' JS stream adapters (leptos → server_fn → wasm-streams),
  # which the app never uses: without them -Oz removes their code (5 KB). Re-looping the
  # control flow before -Oz (twice) gzips 1 KB smaller than a plain -Oz. Last, the
  # imports, exports and their module get one- to three-letter names (the mangled ones
  # are 12 KB, 2.5 KB gzipped); minify-names.mjs renames them in the JS glue to match.
  "$wasm_opt" --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    --remove-exports --pass-arg='remove-exports@*intounderlying*' \
    --flatten --rereloop -Oz -Oz --minify-imports-and-exports-and-modules \
    "$wasm" -o "$wasm.opt" >"$dist/names.json"
  node "$here/minify-names.mjs" "$dist/names.json" "$dist/$crate.js" "$wasm.opt"
  rm "$dist/names.json"
  mv "$wasm.opt" "$wasm"
fi

# Pre-compressed copies: the server sends `file.gz` to browsers that accept gzip.
log "pre-compressing into $dist (*.gz)"
while IFS= read -r -d '' file; do
  if [[ -n $zopfli ]]; then
    "$zopfli" -c "$file" >"$file.gz"
  else
    gzip -9 -c "$file" >"$file.gz"
  fi
done < <(find "$dist" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) -print0)

# The size budget (issue 8): the whole app's wasm, gzipped -9, at most 200 KiB. A build
# over it fails, so a change that bloats the app is caught where it is made.
budget=204800
raw="$(wc -c <"$wasm")"
gz="$(gzip -9c "$wasm" | wc -c)"
served="$(wc -c <"$wasm.gz")"
printf 'wasm: %s bytes, %s bytes gzipped (-9), %s bytes as served (%s)\n' \
  "$raw" "$gz" "$served" "$(basename "$wasm").gz"
if ((gz > budget)); then
  if [[ -z $wasm_opt ]]; then
    printf 'warning: the unoptimised wasm is %s bytes over its %s-byte gzipped budget\n' \
      "$((gz - budget))" "$budget" >&2
  else
    printf 'error: the wasm is %s bytes over its %s-byte gzipped budget (issue 8)\n' \
      "$((gz - budget))" "$budget" >&2
    exit 1
  fi
fi
