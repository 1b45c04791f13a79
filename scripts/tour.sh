#!/usr/bin/env bash
# Set everything up (a .venv with the project installed) and run the tour.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
python -m durable_lab.tour "$@"
