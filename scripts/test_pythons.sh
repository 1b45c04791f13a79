#!/usr/bin/env bash
# Run the gate-fidelity tests (issues #10 and #20) and the workerd trace tests under the other Python
# versions present on this machine (3.12 and 3.13: on PATH as python3.X, or under pyenv), each
# in its own virtual environment (.venv-3.X, made once, reused while pyproject.toml is
# unchanged). asyncio's gather, wait_for and TaskGroup differ between versions, and the input
# gate must behave the same on all of them. A version that is not installed is reported, not
# failed. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TESTS=(tests/test_fidelity_workerd.py tests/test_traces.py tests/test_fidelity_round3.py)
status=0
for version in 3.12 3.13; do
    python=""
    # (pyenv's shims exist for every version but fail for one not selected: try each.)
    for candidate in "$HOME"/.pyenv/versions/"$version"*/bin/python"$version" \
                     "$(command -v "python$version" || true)"; do
        if [ -z "$python" ] && [ -x "$candidate" ] && "$candidate" -c "" >/dev/null 2>&1; then
            python="$candidate"
        fi
    done
    if [ -z "$python" ]; then
        echo "Python $version: not installed here, skipped"
        continue
    fi
    venv="$ROOT/.venv-$version"
    stamp="$venv/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
    if [ ! -f "$stamp" ]; then
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
        "$venv/bin/python" -m pip install --quiet -e "$ROOT[test]"
        touch "$stamp"
    fi
    # the SQL API's SQLite with workerd's row counters (compiled once, linked for each Python)
    "$venv/bin/python" native/sqlite_meter/build.py --quiet || true
    echo "Python $version ($("$venv/bin/python" --version)): ${TESTS[*]}"
    set +e
    "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" "${TESTS[@]}"
    code=$?
    set -e
    if [ "$code" -ne 0 ]; then status=$code; fi
done
exit "$status"
