"""Sizing a workshop machine: how many learners one machine holds, measured with the real hub.

    python bench/bench_workshop.py                     # N = 1, 2, 4, 8 learners
    python bench/bench_workshop.py --sizes 1,4,12 --write bench/RESULTS-workshop.txt

For each N, ``bash scripts/hub.sh --check --users N --report FILE`` starts a fresh hub, logs N
learners in at once, starts their servers and runs the tour and lesson 04 (its panels' widgets
included) in every one of them through the kernel's websocket, all at the same time: the worst
moment of a workshop, everyone pressing *Run All* together. From its report:

- spawn time (login to a ready server) and run time (tour + lesson), median and worst;
- memory per learner: the peak of the learner's control group (their server and every kernel
  it started; the cgroup's own high-water mark), or the kernel's peak RSS where the hub cannot
  make control groups;
- CPU per learner: user+system CPU seconds of the learner's two kernels, and in brackets of
  everything the learner ran (their cgroup's CPU accounting: the server's start included).

Around each run this samples the machine (psutil): how busy both cores were and how much
memory was in use beyond the baseline. The machine is shared, so the table also gives the load
average at the start; per-learner numbers come from the learners' own processes and do not
depend on the neighbours as much as the wall-clock times do.

The knee: the smallest N whose median run time is more than twice the N=1 run time, or that
had any failure. Every learner's CPU limit is 1 core (hub.sh's default), so on 2 cores the
run time should stay flat to N=2 and then grow with N/2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


class Sampler(threading.Thread):
    """The machine's CPU and memory every half second while a run lasts."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.cpu: list[float] = []
        self.used: list[int] = []
        self.done = threading.Event()
        psutil.cpu_percent()  # the next call measures from here

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.cpu.append(psutil.cpu_percent())
            self.used.append(psutil.virtual_memory().used)


def one_size(users: int, lesson: str) -> dict:
    baseline = psutil.virtual_memory().used
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        sampler = Sampler()
        sampler.start()
        started = time.perf_counter()
        result = subprocess.run(["bash", str(ROOT / "scripts" / "hub.sh"), "--check", "--users",
                                 str(users), "--lesson", lesson, "--report", str(report)],
                                capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        found = json.loads(report.read_text()) if report.exists() else {"learners": []}
    learners = found["learners"]
    ok = [lr for lr in learners if not lr["errors"]]
    memory = [lr["group_peak_mb"] or lr["kernel_peak_mb"] for lr in learners]
    return {
        "users": users, "ok": len(ok), "exit": result.returncode, "wall": wall, "load": load,
        "spawn": [lr["spawn"] for lr in learners], "run": [lr["run"] for lr in learners],
        "cpu": [lr["cpu"] for lr in learners], "memory": memory,
        "learner_cpu": [lr["group_cpu"] for lr in learners if lr.get("group_cpu") is not None],
        "from_cgroup": all(lr["group_peak_mb"] for lr in learners),
        "machine_cpu": statistics.mean(sampler.cpu) if sampler.cpu else 0.0,
        "machine_cpu_peak": max(sampler.cpu or [0.0]),
        "machine_mem_mb": (max(sampler.used or [baseline]) - baseline) / 2**20,
        "errors": [e for lr in learners for e in lr["errors"]] + found.get("general", []),
        "tail": result.stdout[-1500:] + result.stderr[-1500:],
    }


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(rows: list[dict]) -> str:
    lines = [
        "  N  ok  spawn med/max  run med/max   CPU/learner (all)  mem/learner med/max  "
        "machine: CPU mean/peak  +mem   load at start",
    ]
    for r in rows:
        lines.append(
            f"{r['users']:>3} {r['ok']:>3}  {med(r['spawn']):5.1f}/{max(r['spawn'] or [0]):5.1f}s "
            f"{med(r['run']):6.1f}/{max(r['run'] or [0]):5.1f}s  {med(r['cpu']):6.1f}s "
            f"({med(r['learner_cpu']):4.1f}s)    "
            f"{med(r['memory']):6.0f}/{max(r['memory'] or [0]):4.0f} MB       "
            f"{r['machine_cpu']:5.0f}%/{r['machine_cpu_peak']:4.0f}%  "
            f"{r['machine_mem_mb']:5.0f} MB  {r['load']:.1f}")
    return "\n".join(lines)


def knee(rows: list[dict]) -> str:
    base = med(rows[0]["run"]) if rows and rows[0]["users"] == 1 else None
    if base is None:
        return "no N=1 in this run to compare with (include 1 in --sizes)"
    for r in rows:
        if r["ok"] < r["users"]:
            return f"N={r['users']}: {r['users'] - r['ok']} learner(s) failed"
        if med(r["run"]) > 2 * base:
            return (f"N={r['users']}: median run {med(r['run']):.1f}s, more than twice the "
                    f"{base:.1f}s of one learner")
    return "not reached: every size ran within twice the single learner's time"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--lesson", default="04")
    parser.add_argument("--write", default="", help="write the results to this file")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for users in sizes:
        print(f"N={users} ...", flush=True)
        row = one_size(users, args.lesson)
        rows.append(row)
        print(table([row]).splitlines()[1], flush=True)
        if row["errors"]:
            print("  errors:", "; ".join(row["errors"][:5]))
        if row["exit"] and not row["errors"]:
            print(row["tail"])
    cpu_model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    header = (
        f"Workshop sizing (bench/bench_workshop.py, issue 22)\n"
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores "
        f"({cpu_model}), {psutil.virtual_memory().total / 2**30:.0f} GiB, Linux "
        f"{platform.release()}, Python {platform.python_version()}; the machine is shared "
        f"(load average at each start in the last column).\n"
        f"Each N: a fresh hub (scripts/hub.sh --check), N learners log in at once, every one "
        f"runs the tour and lesson {args.lesson} at the same time; limits 1 core and 1 GiB per "
        f"learner.\nmem/learner: "
        + ("peak of the learner's cgroup (server + kernels)"
           if all(r["from_cgroup"] for r in rows if r["ok"])
           else "peak RSS of the learner's biggest kernel (no cgroups here)")
        + "; CPU/learner: CPU seconds of the learner's two kernels (all: the learner's cgroup, "
          "server included).\n")
    text = f"{header}\n{table(rows)}\n\nknee: {knee(rows)}\n"
    print("\n" + text)
    if args.write:
        Path(args.write).write_text(text)
    return 0 if all(r["ok"] == r["users"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
