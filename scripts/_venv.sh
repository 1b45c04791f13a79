# Sourced by the other scripts: make (once) and activate the project's virtual environment,
# install the project with its extras into it, and build its SQLite (native/sqlite_meter).
# Idempotent and quiet when up to date.
# Installing also enables the panels' Jupyter server extension for this environment's servers
# (pyproject.toml shared-data -> .venv/etc/jupyter/jupyter_server_config.d/durable_lab.json);
# the stamp follows pyproject.toml, so an older .venv is brought up to date on the next run.
# DURABLE_LAB_VENV, DURABLE_LAB_EXTRAS and DURABLE_LAB_PYTHON choose another environment, the
# extras installed into it and the Python it is made from (scripts/hub.sh uses all three).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DURABLE_LAB_VENV:-$ROOT/.venv}"
EXTRAS="${DURABLE_LAB_EXTRAS:-dev}"
if [ ! -x "$VENV/bin/python" ]; then
    "${DURABLE_LAB_PYTHON:-python3}" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
STAMP="$VENV/.installed-$EXTRAS-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e "$ROOT[$EXTRAS]"
    touch "$STAMP"
fi
# SQLite with workerd's row counters for the SQL API's rowsRead/rowsWritten (durable_lab's own
# build, native/sqlite_meter; needs a C compiler, ~1 min the first time, nothing when up to
# date). If it cannot be built the lab runs on the standard sqlite3 and says so here.
python "$ROOT/native/sqlite_meter/build.py" --quiet || true
cd "$ROOT"
