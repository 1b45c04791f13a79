#!/usr/bin/env bash
# Set everything up and run the whole test suite. Extra arguments go to pytest.
# A whole-suite run (no test file or directory named in the arguments) then runs the gate
# fidelity and trace tests under the other Python versions present (scripts/test_pythons.sh);
# DURABLE_LAB_OTHER_PYTHONS=0 skips that.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
set +e
python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure, not a pass" >&2
    exit 1
fi
targeted=0
for arg in "$@"; do
    case "$arg" in
        tests*|*.py|*::*) targeted=1 ;;
    esac
done
if [ "$status" -eq 0 ] && [ "$targeted" -eq 0 ] && [ "${DURABLE_LAB_OTHER_PYTHONS:-1}" != 0 ]; then
    bash "$(dirname "$0")/test_pythons.sh" || status=$?
fi
exit "$status"
