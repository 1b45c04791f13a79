#!/usr/bin/env bash
# Set everything up (.venv with durable_lab, the panels and JupyterLab) and open the course on
# the five-minute tour. Extra arguments go to `jupyter lab` (e.g. --no-browser --port 8890).
# Where a browser exists JupyterLab opens it on the tour; either way, once the server is up,
# this prints the tour's own address (JupyterLab's log prints the Launcher's). JupyterLab
# serves the folder of the notebook it was given (notebooks/), so the tour is at its top.
set -euo pipefail
source "$(dirname "$0")/_venv.sh"
TOUR="notebooks/00_tour.ipynb"
extra=()
if [ "$(id -u)" -eq 0 ]; then
    extra+=(--allow-root)  # containers and workshop VMs often run as root
fi
port=""
previous=""
for arg in "$@"; do
    case "$arg" in
        --port=*) port="${arg#--port=}" ;;
    esac
    if [ "$previous" = "--port" ]; then port="$arg"; fi
    previous="$arg"
done
if [ -z "$port" ]; then  # the first free port from 8888, as JupyterLab would pick
    port="$(python -c "import socket
for port in range(8888, 8988):
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', port))
        except OSError:
            continue
        print(port)
        break")"
    extra+=(--port "$port")
fi
# Our own token (through the environment, not the command line), so the address printed below
# is complete; JupyterLab accepts it like the one it would have made.
JUPYTER_TOKEN="$(python -c "import secrets; print(secrets.token_hex(24))")"
export JUPYTER_TOKEN
# Opening a file makes its folder the file browser's root: learners see notebooks/ (the lessons),
# not the sources and solutions in course/.
jupyter lab "$TOUR" "${extra[@]}" "$@" &
lab_pid=$!
trap 'kill -TERM "$lab_pid" 2>/dev/null; wait "$lab_pid"; exit 130' INT TERM
for _ in $(seq 1 240); do
    kill -0 "$lab_pid" 2>/dev/null || break
    if python -c "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" \
            "$port" 2>/dev/null; then
        cat <<EOF

  The course is open. Start with the tour:
      http://127.0.0.1:$port/lab/tree/${TOUR#notebooks/}?token=$JUPYTER_TOKEN
  (Ctrl-C here stops JupyterLab.)

EOF
        break
    fi
    sleep 0.5
done
wait "$lab_pid"
