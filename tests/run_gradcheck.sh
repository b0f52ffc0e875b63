#!/bin/bash
# Finite-difference gradient check of every reference case: runs
# $GRADCHECK (tests/tools/gradcheck.c) on $SRC/tests/reference/cases/*.yaml.
# gradcheck exits 0 (pass), 1 (mismatch or error) or 2 (not checkable:
# skipped, with its reason).
set -u

passed=0 failed=0 skipped=0
failures=()
for spec in "$SRC"/tests/reference/cases/*.yaml; do
  name=$(basename "$spec" .yaml)
  out=$("$GRADCHECK" "$spec" 2>&1)
  rc=$?
  case $rc in
    0) passed=$((passed + 1)); echo "PASS $name" ;;
    2) skipped=$((skipped + 1)); echo "SKIP $name ($(grep -m1 '^skipped:' <<<"$out" || echo "exit 2"))" ;;
    *) failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name (exit $rc)"; sed 's/^/    /' <<<"$out" ;;
  esac
done

echo "$passed passed, $failed failed, $skipped skipped"
if ((failed > 0)); then
  echo "failed: ${failures[*]}"
  exit 1
fi
exit 0
