# shellcheck shell=bash
# Fuzzing the parsers (fuzz/, cargo-fuzz layout): `./gradelab fuzz [SECONDS]` and the
# fuzz step of `./gradelab test`. Source it after common.sh; it defines functions only.
#
# - cargo-fuzz is installed once under $CACHE/bin (`cargo install --locked --root $CACHE`).
# - The targets build into $CACHE/fuzz-target, so the main build is never invalidated.
# - Seed corpora are made from tests/fixtures (and fuzz/seeds) at run time into
#   fuzz/corpus/<target>; libFuzzer adds what it finds there, so later runs start richer.
# - No sanitizer (`--sanitizer none`): sanitizers need nightly and the toolchain is stable;
#   the crashes looked for are panics (overflow checks on), hangs, stack overflows and OOM.
# - Hang guard: an input that runs longer than FUZZ_TIMEOUT seconds is a crash.
# - A crash fails the run and prints the path of the input under fuzz/artifacts/.

FUZZ_TARGETS=(docx pdf_text answers_csv_jsonl guide_parser)
FUZZ_TIMEOUT="${GRADELAB_FUZZ_TIMEOUT:-10}"
FUZZ_TARGET_DIR="$CACHE/fuzz-target"
CARGO_FUZZ_VERSION=0.13.2

fuzz_ensure_cargo_fuzz() {
  local have=""
  if [[ -x "$CACHE/bin/cargo-fuzz" ]]; then
    have=$("$CACHE/bin/cargo-fuzz" fuzz --version 2>/dev/null | awk '{ print $2 }')
  fi
  if [[ "$have" != "$CARGO_FUZZ_VERSION" ]]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $CACHE/bin (a minute or two, once)"
    (cd "$CACHE" && env -u CARGO_TARGET_DIR cargo install cargo-fuzz \
      --version "=$CARGO_FUZZ_VERSION" --locked --root "$CACHE" --force) || return 1
  fi
}

# cargo-fuzz with the flags every call needs. With `--sanitizer none` it passes only
# stable rustc flags (sancov via -Cpasses/-Cllvm-args, --cfg fuzzing), so stable Rust
# builds the targets without RUSTC_BOOTSTRAP (tried with cargo-fuzz 0.13.2, Rust 1.95).
fuzz_cargo() {
  local sub=$1
  shift
  env -u CARGO_TARGET_DIR PATH="$CACHE/bin:$PATH" cargo fuzz "$sub" \
    --fuzz-dir "$GRADELAB_ROOT/fuzz" --sanitizer none --target-dir "$FUZZ_TARGET_DIR" "$@"
}

# _fuzz_seed_copy DIR PREFIX FILE...: copy each FILE into DIR (PREFIX bytes first, given
# with printf's %b escapes) unless a seed of that name is already there.
_fuzz_seed_copy() {
  local dir=$1 prefix=$2 f name
  shift 2
  for f in "$@"; do
    [[ -f "$f" ]] || continue
    name="seed-$(printf '%b' "$prefix" | od -An -tx1 | tr -d ' \n')-$(basename "$f")"
    [[ -e "$dir/$name" ]] && continue
    { printf '%b' "$prefix"; cat "$f"; } >"$dir/$name"
  done
}

# Seed corpora from the repository's fixtures.
fuzz_seed() {
  local fx="$GRADELAB_ROOT/tests/fixtures" corpus="$GRADELAB_ROOT/fuzz/corpus" t
  for t in "${FUZZ_TARGETS[@]}"; do mkdir -p "$corpus/$t"; done
  shopt -s nullglob
  _fuzz_seed_copy "$corpus/docx" '' "$fx"/guides/*.docx "$fx"/scripts/*.docx
  _fuzz_seed_copy "$corpus/pdf_text" '' "$fx"/guides/*.pdf "$fx"/hostile/*.pdf
  # The first byte picks how the format is chosen (see answers_csv_jsonl.rs).
  _fuzz_seed_copy "$corpus/answers_csv_jsonl" '\000' "$fx"/answers/* "$fx"/scripts/*.jsonl
  _fuzz_seed_copy "$corpus/answers_csv_jsonl" '\001' "$fx"/answers/*.csv
  _fuzz_seed_copy "$corpus/answers_csv_jsonl" '\002' "$fx"/answers/*.jsonl
  _fuzz_seed_copy "$corpus/guide_parser" '' "$fx"/guides/*.txt "$fx"/guides/*.md \
    "$fx"/scripts/*.txt "$GRADELAB_ROOT"/fuzz/seeds/*
  shopt -u nullglob
}

fuzz_build() {
  fuzz_cargo build --release
}

# fuzz_prepare: cargo-fuzz, the seed corpora and the built targets (`./gradelab test`
# builds them with the other builds, before anything is timed or the model runs).
fuzz_prepare() {
  fuzz_ensure_cargo_fuzz || return 1
  fuzz_seed
  fuzz_build
}

# fuzz_target_run TARGET SECONDS: run one target; print execs and execs/s; on a crash,
# print the input's path and fail.
fuzz_target_run() {
  local t=$1 secs=$2 artifacts="$GRADELAB_ROOT/fuzz/artifacts/$1" out rc=0 execs rate
  local before after f
  mkdir -p "$artifacts"
  before=$(find "$artifacts" -type f | sort)
  out="$CACHE/tmp/fuzz-$t.log"
  fuzz_cargo run --release "$t" "$GRADELAB_ROOT/fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout="$FUZZ_TIMEOUT" -rss_limit_mb=2048 \
    -print_final_stats=1 >"$out" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units/ { print $NF }' "$out" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec/ { print $NF }' "$out" | tail -1)
  after=$(find "$artifacts" -type f | sort)
  if [[ $rc -eq 0 ]]; then
    printf 'fuzz %-18s ok     %ss, %s execs, %s execs/s, corpus %s files\n' "$t" "$secs" \
      "${execs:-?}" "${rate:-?}" "$(find "$GRADELAB_ROOT/fuzz/corpus/$t" -type f | wc -l)"
    return 0
  fi
  printf 'fuzz %-18s FAILED (exit %s) after %s execs; log: %s\n' "$t" "$rc" "${execs:-?}" "$out" >&2
  grep -E '^(==[0-9]+==|thread .* panicked|ERROR: libFuzzer|SUMMARY)' "$out" | head -5 >&2 || true
  while IFS= read -r f; do
    [[ -n "$f" ]] && printf '  crashing input: %s\n  reproduce: ./gradelab fuzz-repro %s %s\n' \
      "$f" "$t" "$f" >&2
  done < <(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after"))
  return 1
}

# fuzz_all SECONDS: every target for SECONDS seconds each (0 skips); fails on any crash.
fuzz_all() {
  local secs=${1:-60} t failed=0
  if [[ "$secs" == 0 ]]; then
    log "fuzzing skipped (0 seconds)"
    return 0
  fi
  [[ "$secs" =~ ^[0-9]+$ ]] || die "fuzz: SECONDS must be a whole number, not '$secs'"
  fuzz_prepare || return 1
  for t in "${FUZZ_TARGETS[@]}"; do
    fuzz_target_run "$t" "$secs" || failed=$((failed + 1))
  done
  [[ $failed -eq 0 ]]
}

# fuzz_repro TARGET FILE: run one input through a target (after a fix, or to see the panic).
fuzz_repro() {
  [[ $# -eq 2 ]] || die "usage: ./gradelab fuzz-repro TARGET FILE"
  fuzz_ensure_cargo_fuzz || return 1
  fuzz_cargo run --release "$1" "$2"
}
