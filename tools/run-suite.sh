#!/usr/bin/env bash
# Runs Limen's test suites and closes with one "N passed, N failed" line.
#   run-suite.sh unit BIN...          unit-test binaries
#   run-suite.sh unit-asan BIN...     the same, built with ASan+UBSan
#   run-suite.sh fuzz-replay BIN...   each fuzz target over its checked-in corpus
#   run-suite.sh blackbox             pytest suites against the real binaries
#   run-suite.sh e2e                  pytest against a real kube-apiserver (tools/e2e-env.sh)
#   run-suite.sh all UNIT... -- ASAN... -- FUZZ...
set -u
cd "$(dirname "$0")/.."
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$PWD/tools/lsan.supp:print_suppressions=0}"
TOTAL_P=0; TOTAL_F=0
LOG_DIR=build/test-logs; mkdir -p "$LOG_DIR"

count() { # reads a suite's output, adds its closing counts
  local p f
  p=$(grep -Eo '[0-9]+ passed' "$1" | tail -1 | grep -Eo '[0-9]+'); f=$(grep -Eo '[0-9]+ failed' "$1" | tail -1 | grep -Eo '[0-9]+')
  TOTAL_P=$((TOTAL_P + ${p:-0})); TOTAL_F=$((TOTAL_F + ${f:-0}))
}

run_units() { # label bins...
  local label=$1; shift
  for b in "$@"; do
    local log="$LOG_DIR/$(echo "$label-$b" | tr '/' '_').log"
    if "$b" >"$log" 2>&1; then :; else
      grep -q ' failed' "$log" || echo "x: 0 passed, 1 failed (crashed)" >>"$log"
      cat "$log"
    fi
    grep -E 'passed|failed' "$log" | tail -1 | sed "s|^|[$label] |"
    count "$log"
  done
}

run_fuzz() {
  for b in "$@"; do
    local name; name=$(basename "$b"); name=${name#fuzz_}
    local src_dir; src_dir=$(dirname "${b#build/fuzz/}")
    local corpus="$src_dir/corpus/$name"
    local log="$LOG_DIR/fuzz-$name.log"
    local n; n=$(ls "$corpus" 2>/dev/null | wc -l)
    if [ "$n" -gt 0 ] && "$b" -runs=1 "$corpus"/* >"$log" 2>&1; then
      echo "[fuzz-replay] $name: $n passed, 0 failed"; TOTAL_P=$((TOTAL_P + n))
    else
      tail -30 "$log"; echo "[fuzz-replay] $name: 0 passed, 1 failed"; TOTAL_F=$((TOTAL_F + 1))
    fi
  done
}

run_pytest() { # label dir: one pytest suite, its closing line added to the totals
  local label=$1 dir=$2
  local log="$LOG_DIR/$label.log"
  LIMEN_BIN="${LIMEN_BIN:-$PWD/bin/asan/limen-dataplane}" python3 -m pytest -q -p no:cacheprovider "$dir" >"$log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ]; then tail -80 "$log"; fi
  if [ $rc -eq 5 ]; then echo "[$label] no tests"; return; fi
  local summary; summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|^(=+ )?[0-9]+ (passed|failed|error)' "$log" | tail -1)
  echo "[$label] ${summary:-no summary line (rc=$rc)}"
  local p f e
  p=$(echo "$summary" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+'); f=$(echo "$summary" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+')
  e=$(echo "$summary" | grep -Eo '[0-9]+ error' | grep -Eo '[0-9]+')
  TOTAL_P=$((TOTAL_P + ${p:-0})); TOTAL_F=$((TOTAL_F + ${f:-0} + ${e:-0}))
  [ $rc -eq 0 ] || [ -n "$f$e" ] || TOTAL_F=$((TOTAL_F + 1))
}
run_blackbox() { run_pytest blackbox dataplane/t; }
run_e2e() { run_pytest e2e e2e/t; }

mode=$1; shift
case "$mode" in
  unit) run_units unit "$@" ;;
  unit-asan) run_units unit-asan "$@" ;;
  fuzz-replay) run_fuzz "$@" ;;
  blackbox) run_blackbox ;;
  e2e) run_e2e ;;
  all)
    units=(); asans=(); fuzzes=(); part=0
    for a in "$@"; do
      if [ "$a" = "--" ]; then part=$((part + 1)); continue; fi
      case $part in 0) units+=("$a");; 1) asans+=("$a");; 2) fuzzes+=("$a");; esac
    done
    run_units unit "${units[@]}"
    run_units unit-asan "${asans[@]}"
    run_fuzz "${fuzzes[@]}"
    run_blackbox
    run_e2e
    ;;
esac
echo "$TOTAL_P passed, $TOTAL_F failed"
[ "$TOTAL_F" -eq 0 ]
