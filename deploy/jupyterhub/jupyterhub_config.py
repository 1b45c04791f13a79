"""JupyterHub configuration for a workshop room on one machine (started by scripts/hub.sh).

scripts/hub.sh passes the room's settings in ``DURABLE_LAB_HUB_*`` environment variables (so
this file holds no secret and no machine path) and starts ``jupyterhub -f`` this file. To run
it by hand, set those variables the same way; every one has a default but the password.

Choices, and why:

- **Login: JupyterHub's shared-password authenticator** (built in since JupyterHub 5, so no
  extra package): a learner types any name and the workshop password printed by hub.sh; the
  first login of a name makes that learner. Made for exactly this (a room where the instructor
  hands out one password). Its limit, stated plainly: anyone with the password can log in under
  *any* learner's name. The hub keeps a learner's session out of another learner's server, but
  it cannot tell Ada from someone typing "ada". For a course over weeks, where identity
  matters, use your institution's OAuth (oauthenticator) or NativeAuthenticator (learners set
  their own password) instead.
- **The instructor** logs in with the name in ``DURABLE_LAB_HUB_INSTRUCTOR`` (default
  ``instructor``) and the *admin* password (32+ characters, also printed): admin page at
  /hub/admin, where they can see, start and stop every learner's server.
- **Spawner: WorkshopSpawner** (workshop_spawner.py): a local process per learner with a home
  under the workshop folder, the course copied in, its own Unix uid when the hub runs as root,
  memory and CPU limits through cgroups where the kernel allows (cgroup_limits.py).
- **Landing on the tour**: every server opens notebooks/00_tour.ipynb in JupyterLab.
- **Idle culling**: jupyterhub-idle-culler, run by the hub as a service, stops a server after
  ``DURABLE_LAB_HUB_CULL`` seconds without activity (default 3600: longer than a talk between
  exercises). The learner's files stay; logging in again starts a fresh server.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the checkout
sys.path.insert(0, str(HERE))  # workshop_spawner, cgroup_limits

env = os.environ.get
WORKDIR = Path(env("DURABLE_LAB_HUB_DIR", str(ROOT / ".hub")))
STATE = WORKDIR / "hub"  # the hub's database and cookie secret: 0700, root's only
STATE.mkdir(parents=True, exist_ok=True)
os.chmod(STATE, 0o700)
PORT = int(env("DURABLE_LAB_HUB_PORT", "8000"))
BIN = Path(sys.executable).parent  # the environment this hub runs in also runs the learners

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (provided by JupyterHub)

# -- network: the proxy listens for learners; the hub and the proxy's API stay on localhost --
c.JupyterHub.ip = env("DURABLE_LAB_HUB_IP", "0.0.0.0")
c.JupyterHub.port = PORT
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = PORT + 1  # next to the public port, so two hubs on two ports coexist
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 2}"
c.ConfigurableHTTPProxy.command = [env("DURABLE_LAB_HUB_PROXY", "configurable-http-proxy")]
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every learner's server
c.JupyterHub.cleanup_proxy = True

# -- who may log in ---------------------------------------------------------------------------
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["DURABLE_LAB_HUB_PASSWORD"]
c.Authenticator.allow_all = True  # any name, with the workshop password
INSTRUCTOR = env("DURABLE_LAB_HUB_INSTRUCTOR", "instructor")
if env("DURABLE_LAB_HUB_ADMIN_PASSWORD"):
    c.Authenticator.admin_users = {INSTRUCTOR}
    c.SharedPasswordAuthenticator.admin_password = env("DURABLE_LAB_HUB_ADMIN_PASSWORD")
# Names become folder names and appear on the instructor's admin page: keep them plain.
c.Authenticator.username_pattern = r"^[a-z0-9][a-z0-9._-]{0,31}$"

# -- each learner's server --------------------------------------------------------------------
c.JupyterHub.spawner_class = "workshop_spawner.WorkshopSpawner"
c.WorkshopSpawner.workshop_dir = str(WORKDIR / "learners")
c.WorkshopSpawner.course_dir = env("DURABLE_LAB_HUB_COURSE", str(ROOT / "notebooks"))
if env("DURABLE_LAB_HUB_ISOLATE") in ("0", "1"):  # hub.sh checked root and the folders' modes
    c.WorkshopSpawner.isolate = env("DURABLE_LAB_HUB_ISOLATE") == "1"
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab/tree/notebooks/00_tour.ipynb"  # land on the tour
c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH"]
c.Spawner.environment = {"DURABLE_LAB_HUB": str(WORKDIR)}
# Enforced by cgroups where the kernel allows (cgroup_limits.py); otherwise only shown.
c.Spawner.mem_limit = env("DURABLE_LAB_HUB_MEM", "1G")
c.Spawner.cpu_limit = float(env("DURABLE_LAB_HUB_CPU", "1"))
# A room logging in at once on a small machine: give a server time to come up. A JupyterLab
# server's start costs a few CPU seconds; measured (bench/RESULTS-workshop.txt) 12 learners
# logging in together on 2 cores already busy with other work took longer than 120 s, and the
# hub then gave up on all of them. Waiting is better than failing the whole room.
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.JupyterHub.concurrent_spawn_limit = 20

# -- idle culling -------------------------------------------------------------------------------
CULL = int(env("DURABLE_LAB_HUB_CULL", "3600"))
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={CULL}",
                f"--cull-every={max(60, CULL // 6)}"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
