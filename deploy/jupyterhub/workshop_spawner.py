"""The workshop's spawner: one local single-user server per learner, no Unix accounts needed.

JupyterHub's ``LocalProcessSpawner`` runs each server as the learner's own Unix user, so every
learner would need an account on the machine; its ``SimpleLocalProcessSpawner`` needs none but
runs every server as the hub's user, so any learner's code can read any other learner's files.
This spawner sits between the two:

- **a home per learner** under the workshop folder (``<workshop>/learners/<name>``), with the
  course copied in on every start, file by file, *only where the learner has no file of that
  name*: their edits survive a server restart (and a hub restart), and a lesson they deleted
  comes back the next time they start their server (hub control panel: *Stop My Server*, then
  *Start My Server*);
- **a Unix user id per learner, without an account**, when the hub runs as root (CI, a workshop
  VM): the server is started with ``setuid(uid_base + the learner's hub id)``; the learner's
  home belongs to that id and is private (mode 0700), so one learner's kernel cannot list or
  read another's files. Not root (an instructor's laptop): every server runs as the hub's user
  and that isolation is *not* there (the hub still keeps one learner out of another's server);
- **memory and CPU limits** per learner through control groups where the kernel lets the hub
  make them (cgroup_limits.py); otherwise they are advertised but not enforced, and the hub's
  log says why at every start.

What this does *not* isolate: all learners share the machine's /tmp, network and process
table (a learner can see, not signal, the others' processes), and the Python environment the
course runs in. For a course with strangers, use Zero to JupyterHub (deploy/kubernetes/), where
each learner gets a container.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import cgroup_limits
from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Bool, Integer, List, Unicode, default


class WorkshopSpawner(SimpleLocalProcessSpawner):
    workshop_dir = Unicode(
        config=True, help="Folder holding one home folder per learner (made 0711: traversable, "
                          "not listable, so learners cannot see each other's names).")
    course_dir = Unicode(config=True, help="The course folder copied into each learner's home.")
    course_name = Unicode("notebooks", config=True,
                          help="Name of the course folder inside the learner's home.")
    course_ignore = List(
        Unicode(), ["solutions", "_build.py", "__pycache__", ".ipynb_checkpoints", "*.pyc"],
        config=True, help="What of the course folder learners do not get (glob patterns).")
    uid_base = Integer(
        20000, config=True, help="A learner's Unix user id is uid_base + their hub user id.")
    isolate = Bool(config=True, help="Run each learner under their own Unix user id "
                                     "(needs root; the default when the hub runs as root).")

    _python_reachable: ClassVar[dict[int, bool]] = {}  # uid_base -> can such a uid run our Python?

    @default("isolate")
    def _default_isolate(self) -> bool:
        if os.geteuid() != 0:
            return False
        if self.uid_base not in self._python_reachable:
            # A uid without an account can run this environment only if every folder on the
            # way to it (and to its base Python) lets others through: pyenv's under /root does
            # not. Then run learners as the hub's user rather than not at all, and say so.
            def as_other():
                os.setgroups([])
                os.setgid(self.uid_base)
                os.setuid(self.uid_base)

            probe = subprocess.run([sys.executable, "-c", "import jupyterhub, durable_lab"],
                                   preexec_fn=as_other, cwd="/", capture_output=True,
                                   check=False)
            self._python_reachable[self.uid_base] = probe.returncode == 0
            if probe.returncode != 0:
                self.log.warning(
                    "learners will share the hub's Unix user: %s cannot be run by another uid "
                    "(%s). Make the hub's environment from a Python outside /root.",
                    sys.executable, (probe.stderr or b"").decode(errors="replace")[-200:])
        return self._python_reachable[self.uid_base]

    @default("home_dir")
    def _default_home_dir(self) -> str:
        # escaped_name keeps a name like "ada/../x" from naming a folder outside the workshop
        return str(Path(self.workshop_dir) / self.user.escaped_name)

    @property
    def uid(self) -> int:
        return self.uid_base + self.user.id

    # -- the home folder ---------------------------------------------------------------------

    def prepare_home(self) -> int:
        """Make the learner's home and copy in what of the course is missing; return how many
        files were copied."""
        workshop = Path(self.workshop_dir)
        workshop.mkdir(parents=True, exist_ok=True)
        os.chmod(workshop, 0o711)
        home = Path(self.home_dir)
        home.mkdir(exist_ok=True)
        target = home / self.course_name
        ignore = shutil.ignore_patterns(*self.course_ignore)
        copied = 0
        for folder, subfolders, files in os.walk(self.course_dir):
            here = Path(folder)
            skip = ignore(folder, subfolders + files)
            subfolders[:] = [s for s in subfolders if s not in skip]
            into = target / here.relative_to(self.course_dir)
            into.mkdir(parents=True, exist_ok=True)
            for name in files:
                if name not in skip and not (into / name).exists():
                    shutil.copy2(here / name, into / name)
                    copied += 1
        if self.isolate:
            for path in [home, *home.rglob("*")]:
                os.lchown(path, self.uid, self.uid)
        os.chmod(home, 0o700 if self.isolate else 0o755)
        return copied

    # -- starting the server -----------------------------------------------------------------

    async def start(self):  # type: ignore[override]
        copied = await asyncio.to_thread(self.prepare_home)
        self.log.info("%s: home %s (%d course files copied in)", self.user.name, self.home_dir,
                      copied)
        self.group = cgroup_limits.prepare(self.user.escaped_name, self.mem_limit,
                                           self.cpu_limit)
        if self.group.enforced:
            self.log.info("%s: limits enforced by cgroups: memory %s, cpu %s", self.user.name,
                          self.mem_limit, self.cpu_limit)
        else:
            self.log.warning("%s: memory/CPU limits NOT enforced: %s", self.user.name,
                             self.group.problem)
        return await super().start()

    async def stop(self, now=False):  # type: ignore[override]
        await super().stop(now=now)
        group = getattr(self, "group", None)
        if group is not None:
            # The kernels may still be exiting after the server did: give the group a moment
            # to empty (a group with a process in it cannot be removed).
            for _ in range(20):
                group.remove()
                if not any(path.exists() for path in group.paths):
                    break
                await asyncio.sleep(0.1)

    def make_preexec_fn(self, name):  # type: ignore[override]
        # Runs in the child between fork and exec, as the hub's user: join the learner's
        # control groups first (needs root), then drop to the learner's uid for good.
        home, group, isolate, uid = self.home_dir, self.group, self.isolate, self.uid

        def preexec():
            if group.enforced:
                group.join()
            if isolate:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            os.umask(0o077 if isolate else 0o022)
            os.chdir(home)

        return preexec

    def get_args(self):  # type: ignore[override]
        args = super().get_args()
        if os.geteuid() == 0 and not self.isolate:
            args.append("--allow-root")  # a root hub that was told not to drop privileges
        return args

    def user_env(self, env):  # type: ignore[override]
        env = super().user_env(env)
        env["DURABLE_LAB_LEARNER_UID"] = str(self.uid) if self.isolate else ""
        return env
