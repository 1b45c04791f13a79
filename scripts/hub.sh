#!/usr/bin/env bash
# A JupyterHub for a workshop room, on this machine: sets everything up (.venv-hub with the
# course, JupyterHub and the idle culler from PyPI, configurable-http-proxy from npm), starts the
# hub, prints the address and the workshop password, and runs until Ctrl-C (which stops every
# learner's server; their files stay in the workshop folder). Configuration and the reasons
# for it: deploy/jupyterhub/.
#
#   bash scripts/hub.sh                      # the room: http://<this machine>:8000/
#   bash scripts/hub.sh --check --users 30   # preflight: 30 learners run the tour and a lesson
#
# Options: --port P (8000; the hub also uses P+1 and P+2 on localhost), --ip ADDR (0.0.0.0),
# --dir FOLDER (.hub: learners' homes, the hub's database, the passwords), --password PW
# (8+ characters; default: made once, kept in FOLDER/hub/password), --mem 1G and --cpu 1
# (per learner), --cull SECONDS (3600), and for --check: --users N (3), --lesson NN (04),
# --report FILE (the results as JSON too; bench/bench_workshop.py reads it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() { echo "hub.sh: $*" >&2; exit 2; }
port="" ip="0.0.0.0" dir="$ROOT/.hub" password="" mem="1G" cpu="1" cull="3600"
check=0 users=3 lesson="04" report=""
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check=1; shift; continue ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --port|--ip|--dir|--password|--mem|--cpu|--cull|--users|--lesson|--report)
            [ $# -ge 2 ] || die "$1 needs a value"
            case "$1" in
                --port) port="$2" ;; --ip) ip="$2" ;; --dir) dir="$2" ;;
                --password) password="$2" ;; --mem) mem="$2" ;; --cpu) cpu="$2" ;;
                --cull) cull="$2" ;; --users) users="$2" ;; --lesson) lesson="$2" ;;
                --report) report="$2" ;;
            esac
            shift 2 ;;
        *) die "unknown argument '$1' (allowed: --check --users N --lesson NN --report FILE --port P --ip ADDR --dir FOLDER --password PW --mem SIZE --cpu CORES --cull SECONDS; see --help)" ;;
    esac
done
[[ -z "$port" || "$port" =~ ^[0-9]+$ && "$port" -ge 1024 && "$port" -le 65533 ]] \
    || die "--port must be a number from 1024 to 65533, not '$port'"
[[ "$users" =~ ^[0-9]+$ && "$users" -ge 1 ]] || die "--users must be 1 or more, not '$users'"
[[ "$lesson" =~ ^[0-9][0-9]$ ]] || die "--lesson must be two digits (00 to 10), not '$lesson'"
[[ "$mem" =~ ^[0-9]+[KMGT]?$ ]] || die "--mem must be a size such as 1G or 800M, not '$mem'"
[[ "$cpu" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--cpu must be a number of cores such as 1 or 0.5, not '$cpu'"
[[ "$cull" =~ ^[0-9]+$ && "$cull" -ge 60 ]] || die "--cull must be seconds, 60 or more, not '$cull'"
if [ -n "$password" ] && [ "${#password}" -lt 8 ]; then
    die "--password must be at least 8 characters (JupyterHub's rule), got ${#password}"
fi

# The hub's own environment (.venv-hub: JupyterHub, JupyterLab, the course; also what learners'
# kernels run). Run as root, the hub starts each learner's server under their own Unix uid, so
# that environment must be made from a Python every user may run: not one under /root (0700),
# such as pyenv's. Debian's /usr/bin/python3 is, when it is 3.11 or newer.
reachable() {  # reachable PYTHON: is PYTHON (and its standard library) usable by other users?
    "$1" - <<'EOF' 2>/dev/null
import os, sys
from pathlib import Path
for start in {Path(sys.executable).resolve(), Path(sys.base_prefix).resolve() / "lib"}:
    for folder in [start, *start.parents]:
        if folder.is_dir() and not os.stat(folder).st_mode & 0o001:
            sys.exit(1)
sys.exit(0 if sys.version_info >= (3, 11) else 1)
EOF
}
if [ -z "${DURABLE_LAB_PYTHON:-}" ] && [ "$(id -u)" -eq 0 ] && ! reachable python3; then
    for candidate in /usr/bin/python3 /usr/local/bin/python3; do
        if [ -x "$candidate" ] && reachable "$candidate"; then
            export DURABLE_LAB_PYTHON="$candidate"; break
        fi
    done
fi
export DURABLE_LAB_VENV="${DURABLE_LAB_HUB_VENV:-$ROOT/.venv-hub}" DURABLE_LAB_EXTRAS=hub
if [ ! -x "$DURABLE_LAB_VENV/bin/python" ]; then
    echo "hub.sh: making the hub's environment $DURABLE_LAB_VENV (once; a minute or two)"
fi
source "$ROOT/scripts/_venv.sh"
proxy="$(command -v configurable-http-proxy || true)"
if [ -z "$proxy" ]; then
    proxy="$VENV/node_modules/.bin/configurable-http-proxy"
    if [ ! -x "$proxy" ]; then
        command -v npm >/dev/null || die "configurable-http-proxy needs Node.js and npm (e.g. apt-get install nodejs npm)"
        echo "hub.sh: installing configurable-http-proxy from npm into $VENV (once)"
        npm install --prefix "$VENV" --no-audit --no-fund --loglevel=error \
            configurable-http-proxy@4 >/dev/null
    fi
fi

# A port is free when this machine lets us listen on it. The hub needs three: the public one
# (learners' browsers) and, on localhost, the next two (the hub's API, the proxy's API).
ports_free() {
    python - "$1" "$2" <<'EOF'
import socket, sys
ip, port = sys.argv[1], int(sys.argv[2])
for host, p in ((ip, port), ("127.0.0.1", port + 1), ("127.0.0.1", port + 2)):
    with socket.socket() as s:
        try:
            s.bind((host, p))
        except OSError:
            print(p)
            sys.exit(1)
EOF
}
if [ "$check" -eq 1 ]; then
    ip="127.0.0.1"
    if [ -z "$port" ]; then   # a free block of three, so a running room hub is left alone
        for candidate in $(seq 18000 3 18300); do
            if ports_free "$ip" "$candidate" >/dev/null; then port="$candidate"; break; fi
        done
    fi
fi
port="${port:-8000}"
if ! busy="$(ports_free "$ip" "$port")"; then
    die "port $busy is busy: another hub (or another program) already listens there. Stop it, or start this one on other ports: bash scripts/hub.sh --port $((port + 10))"
fi
if [ "$check" -eq 1 ]; then  # the preflight's hub is a throw-away: its own folder, removed after
    dir="$(mktemp -d "${TMPDIR:-/tmp}/durable_lab-hub-check.XXXXXX")"
fi

mkdir -p "$dir/hub"
chmod 711 "$dir"      # learners' servers (their own uids) pass through to learners/<name>
chmod 700 "$dir/hub"  # the hub's database, cookie secret and passwords
dir="$(cd "$dir" && pwd)"
secret() {  # secret FILE LENGTH: made once, then reused (learners may already have it)
    if [ ! -s "$1" ]; then
        (umask 077; python -c "import secrets, string, sys
alphabet = [c for c in string.ascii_lowercase + string.digits if c not in 'il1o0']
print(''.join(secrets.choice(alphabet) for _ in range(int(sys.argv[1]))))" "$2" >"$1")
    fi
    cat "$1"
}
if [ -n "$password" ]; then
    (umask 077; echo "$password" >"$dir/hub/password")
fi
password="$(secret "$dir/hub/password" 10)"
admin_password="$(secret "$dir/hub/admin-password" 32)"

export DURABLE_LAB_HUB_DIR="$dir" DURABLE_LAB_HUB_IP="$ip" DURABLE_LAB_HUB_PORT="$port"
export DURABLE_LAB_HUB_PASSWORD="$password" DURABLE_LAB_HUB_ADMIN_PASSWORD="$admin_password"
export DURABLE_LAB_HUB_PROXY="$proxy" DURABLE_LAB_HUB_MEM="$mem" DURABLE_LAB_HUB_CPU="$cpu"
export DURABLE_LAB_HUB_CULL="$cull" DURABLE_LAB_HUB_INSTRUCTOR="instructor"

# Per-learner Unix uids (deploy/jupyterhub/workshop_spawner.py) need root, and every folder on
# the way to the hub's Python, its environment, this checkout and the learners' homes must let
# other users pass (o+x): a checkout or --dir under /root (0700) does not. Otherwise learners
# share the hub's user, and the banner says why.
closed="$(python - "$VENV" "$ROOT" "$dir" <<'EOF'
import os, sys
from pathlib import Path
for start in [Path(sys.executable), Path(sys.base_prefix) / "lib", *map(Path, sys.argv[1:])]:
    for folder in [start.resolve(), *start.resolve().parents]:
        if folder.is_dir() and not os.stat(folder).st_mode & 0o001:
            print(f"{folder} (mode {os.stat(folder).st_mode & 0o777:o})")
            sys.exit()
EOF
)"
if [ "$(id -u)" -ne 0 ]; then
    export DURABLE_LAB_HUB_ISOLATE=0
    isolation="NOT isolated: learners' servers run as you (run hub.sh as root for a uid per learner)"
elif [ -n "$closed" ]; then
    export DURABLE_LAB_HUB_ISOLATE=0
    isolation="NOT isolated: $closed is closed to other users, so learners share root's uid; put the checkout and --dir under folders others may pass through (e.g. /srv)"
else
    export DURABLE_LAB_HUB_ISOLATE=1
    isolation="each learner's server runs under their own Unix uid; homes are private"
fi
log="$dir/hub/jupyterhub.log"
jupyterhub -f "$ROOT/deploy/jupyterhub/jupyterhub_config.py" >>"$log" 2>&1 &
hub_pid=$!

stop_hub() {
    trap - EXIT INT TERM
    if kill -0 "$hub_pid" 2>/dev/null; then
        echo "hub.sh: stopping the hub and every learner's server"
        kill -TERM "$hub_pid" 2>/dev/null || true
        for _ in $(seq 1 120); do kill -0 "$hub_pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$hub_pid" 2>/dev/null || true
    fi
    wait "$hub_pid" 2>/dev/null || true
    # Anything of this hub still alive (a server the hub lost track of): its environment names
    # this workshop folder.
    python - "$dir" <<'EOF'
import psutil, sys
for proc in psutil.process_iter():
    try:
        if proc.environ().get("DURABLE_LAB_HUB") == sys.argv[1]:
            print(f"hub.sh: stopping leftover process {proc.pid} ({proc.name()})")
            proc.kill()
    except (psutil.Error, OSError):
        pass
EOF
    if [ "$check" -eq 1 ]; then rm -rf "$dir"; fi
}
trap stop_hub EXIT
trap 'exit 130' INT TERM

url="http://127.0.0.1:$port"
for _ in $(seq 1 240); do
    if ! kill -0 "$hub_pid" 2>/dev/null; then
        echo "hub.sh: the hub did not start; the end of its log ($log):" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
    if python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
            "$url/hub/api" 2>/dev/null; then break; fi
    sleep 0.5
done

if [ "$check" -eq 1 ]; then
    echo "hub.sh: preflight with $users learners on $url (tour, then lesson $lesson)"
    set +e
    python "$ROOT/deploy/jupyterhub/preflight.py" --url "$url" --password "$password" \
        --admin-password "$admin_password" --users "$users" --lesson "$lesson" \
        ${report:+--json "$report"}
    status=$?
    set -e
    if [ "$status" -ne 0 ]; then
        kept="${TMPDIR:-/tmp}/durable_lab-hub-check-failed.log"
        cp "$log" "$kept"
        echo "hub.sh: the preflight FAILED; the hub's whole log is kept in $kept. Its errors:" >&2
        grep -E '^\[E|Error|Traceback' "$log" | tail -n 20 >&2 || true
    fi
    exit "$status"
fi

host="$(hostname -I 2>/dev/null | awk '{print $1}')"
limits="$(cd "$ROOT/deploy/jupyterhub" && python -c "import cgroup_limits as c, sys
g = c.prepare('hub-sh-probe', 1 << 30, 1.0)
g.remove()
print('enforced by cgroups' if g.enforced else 'NOT enforced: ' + g.problem)")"
cat <<EOF

  The workshop hub is up.
  Learners open    http://${host:-127.0.0.1}:$port/   (on this machine: $url/)
  Name             any, lowercase (letters, digits, . _ -): each name is a learner
  Password         $password
  Instructor       name 'instructor', password $admin_password
                   (the admin page $url/hub/admin: every learner's server)
  Per learner      memory $mem, CPU $cpu core(s): $limits
  Files            $isolation
  Idle servers     stopped after ${cull}s without activity (files stay)
  Homes            $dir/learners/   (kept when the hub stops)
  Log              $log
  Stop             Ctrl-C (stops every learner's server; their files stay)

EOF
wait "$hub_pid"
