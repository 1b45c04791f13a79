"""Per-learner memory and CPU limits for single-user servers started as local processes.

A local process spawner has no container around a learner's server, so JupyterHub's
``Spawner.mem_limit`` and ``Spawner.cpu_limit`` are only *advertised* to the server (as the
``MEM_LIMIT`` and ``CPU_LIMIT`` environment variables): nothing enforces them. The Linux kernel
can, through control groups: one group per learner holding the learner's server and every kernel
it starts, with a memory ceiling (the kernel's OOM killer ends the biggest process of *that*
group when the learner goes over, not a neighbour's) and a CPU quota (a learner's busy loop gets
at most ``cpu_limit`` cores, however many are idle).

Making a group needs root and a writable cgroup file system. Both layouts are handled:

- cgroup v1 (one hierarchy per controller, e.g. ``/sys/fs/cgroup/memory``): the learner's group
  is made below the hub's own group in the ``memory`` and ``cpu`` hierarchies;
- cgroup v2 (one unified hierarchy, ``/sys/fs/cgroup/cgroup.controllers`` exists): below a
  ``durable_lab-hub`` group at the root, whose ``cgroup.subtree_control`` enables ``memory`` and
  ``cpu`` (v2 forbids enabling them below a group that itself holds processes, such as the
  hub's own).

When neither works (not root, a read-only /sys/fs/cgroup, controllers not delegated), the
limits are not enforced and :func:`prepare` says why; the hub still runs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # the CPU quota is counted per 100 ms period (the kernel's default)


@dataclass
class LearnerGroup:
    """The control group(s) of one learner: where to put their processes, what they may use."""

    name: str
    paths: list[Path] = field(default_factory=list)  # one per hierarchy (v1) or one (v2)
    memory_file: Path | None = None  # the file whose number is the peak memory, in bytes
    problem: str = ""  # why the limits are not enforced ("" when they are)

    @property
    def enforced(self) -> bool:
        return bool(self.paths) and not self.problem

    def join(self, pid: int = 0) -> None:
        """Move a process (0: the calling one) into the group. Used in the server's preexec."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def peak_bytes(self) -> int | None:
        try:
            return int(self.memory_file.read_text()) if self.memory_file else None
        except (OSError, ValueError):
            return None

    def remove(self) -> None:
        """Remove the (empty) groups after the server stopped; a busy group is left alone."""
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.rmdir()


def _own_path(controller: str) -> str:
    """The hub's own cgroup path in the hierarchy holding ``controller`` ('' for v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path.lstrip("/")
    raise OSError(f"no {controller or 'unified'} cgroup hierarchy in /proc/self/cgroup")


def _v1_mount(controller: str) -> Path:
    marker = {"cpu": "cpu.cfs_quota_us", "cpuacct": "cpuacct.usage"}.get(controller,
                                                                        "cgroup.procs")
    for candidate in (ROOT / controller, ROOT / "cpu,cpuacct", ROOT / "cpuacct,cpu"):
        if (candidate / "cgroup.procs").exists() and (candidate / marker).exists():
            return candidate
    raise OSError(f"no cgroup v1 hierarchy for {controller} under {ROOT}")


def prepare(name: str, mem_limit: int | None, cpu_limit: float | None) -> LearnerGroup:
    """Make (or reuse) the learner's group with these limits; never raises."""
    group = LearnerGroup(name)
    if not mem_limit and not cpu_limit:
        group.problem = "no limits configured"
        return group
    if os.geteuid() != 0:
        group.problem = "the hub does not run as root, so it cannot make control groups"
        return group
    try:
        if (ROOT / "cgroup.controllers").exists():
            _prepare_v2(group, mem_limit, cpu_limit)
        else:
            _prepare_v1(group, mem_limit, cpu_limit)
    except OSError as error:
        group.problem = f"control groups not usable here ({error})"
        group.paths = []
    return group


def _prepare_v1(group: LearnerGroup, mem_limit: int | None, cpu_limit: float | None) -> None:
    if mem_limit:
        path = _v1_mount("memory") / _own_path("memory") / "durable_lab-hub" / group.name
        path.mkdir(parents=True, exist_ok=True)
        (path / "memory.limit_in_bytes").write_text(str(mem_limit))
        group.paths.append(path)
        group.memory_file = path / "memory.max_usage_in_bytes"
    if cpu_limit:
        path = _v1_mount("cpu") / _own_path("cpu") / "durable_lab-hub" / group.name
        path.mkdir(parents=True, exist_ok=True)
        (path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (path / "cpu.cfs_quota_us").write_text(str(int(cpu_limit * PERIOD_US)))
        group.paths.append(path)
    # Not a limit: the accounting of the learner's CPU time (server and kernels), which the
    # preflight reports. Often the same hierarchy as cpu ("cpu,cpuacct"); here when separate.
    with contextlib.suppress(OSError):
        path = _v1_mount("cpuacct") / _own_path("cpuacct") / "durable_lab-hub" / group.name
        if path not in group.paths:
            path.mkdir(parents=True, exist_ok=True)
            group.paths.append(path)


def _prepare_v2(group: LearnerGroup, mem_limit: int | None, cpu_limit: float | None) -> None:
    parent = ROOT / "durable_lab-hub"
    parent.mkdir(exist_ok=True)
    wanted = [c for c, on in (("memory", mem_limit), ("cpu", cpu_limit)) if on]
    (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
    path = parent / group.name
    path.mkdir(exist_ok=True)
    if mem_limit:
        (path / "memory.max").write_text(str(mem_limit))
        if (path / "memory.swap.max").exists():  # no swapping past the ceiling either
            (path / "memory.swap.max").write_text("0")
        group.memory_file = path / "memory.peak"  # Linux 5.19 and newer
    if cpu_limit:
        (path / "cpu.max").write_text(f"{int(cpu_limit * PERIOD_US)} {PERIOD_US}")
    group.paths.append(path)
