#!/usr/bin/env bash
# Set everything up (.venv with durable_lab, the panels and JupyterLab) and open the course on
# the five-minute tour. Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8890).
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
extra=()
if [ "$(id -u)" -eq 0 ]; then
    extra+=(--allow-root)  # containers and workshop VMs often run as root
fi
# Opening a file makes its folder the file browser's root: learners see notebooks/ (the lessons),
# not the sources and solutions in course/.
exec jupyter lab notebooks/00_tour.ipynb "${extra[@]}" "$@"
