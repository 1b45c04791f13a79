# Sourced by the other scripts: make (once) and activate the project's virtual environment,
# and install the project with its extras into it. Idempotent and quiet when up to date.
# Installing also enables the panels' Jupyter server extension for this environment's servers
# (pyproject.toml shared-data -> .venv/etc/jupyter/jupyter_server_config.d/durable_lab.json);
# the stamp follows pyproject.toml, so an older .venv is brought up to date on the next run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DURABLE_LAB_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
STAMP="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -e "$ROOT[dev]"
    touch "$STAMP"
fi
cd "$ROOT"
