"""Crash test: SIGKILL a process in the middle of its work, again and again, on one folder.

The child (tests/crash_worker.py) bumps a few objects with concurrent calls; ``bump(i)`` writes
``a = i``, ``b = i`` and ``log{i} = i`` in one turn (one batch, one transaction), and the child
prints ``ack obj i`` once a call has returned. The parent kills it at a random moment (50-400 ms
after it printed its start line, seeded), then reads the SQLite files itself (read-only) and checks:

- durability: every acknowledged write is there (``a`` >= the highest acked ``i`` of that
  object, ``log{i}`` exists for every acked ``i``);
- atomicity: no partial batch (``a == b``, ``log{a}`` exists, no ``log{j}`` with ``j > a``);
- prefix consistency: the logs are exactly ``log1..log{a}`` (calls are delivered and committed
  in order, so a later batch can never survive an earlier one);
- the next child, on the same folder, starts exactly from what the parent found.

At the end a new Lab reopens the folder and must see the same state through the runtime.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from durable_lab import DurableObject, Lab, values

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parent / "crash_worker.py"
BINDING = "BUMP"
OBJECTS = 4
NAMES = [f"obj{j}" for j in range(OBJECTS)]
ROUNDS = 40
SEED = 20240611


class Reader(DurableObject):
    async def snapshot(self):
        storage = self.ctx.storage
        a = await storage.get("a")
        b = await storage.get("b")
        logs = await storage.list(prefix="log")
        return {"a": a or 0, "b": b or 0, "logs": sorted(int(k[3:]) for k in logs),
                "log_values_ok": all(int(k[3:]) == v for k, v in logs.items())}


def object_files(folder: Path) -> dict[str, Path]:
    async def ids() -> dict[str, str]:
        lab = Lab(storage="memory")
        try:
            ns = lab.bind(BINDING, Reader)
            return {name: ns.idFromName(name).toString() for name in NAMES}
        finally:
            await lab.close()

    return {name: folder / BINDING / f"{hex_id}.sqlite"
            for name, hex_id in asyncio.run(ids()).items()}


def read_kv(path: Path) -> dict[str, object] | None:
    """The committed ``_cf_KV`` rows of one object, decoded; None if it has no database yet."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, value FROM _cf_KV").fetchall()
    finally:
        db.close()
    return {k: values.decode(v) for k, v in rows}


def parse_output(text: str) -> tuple[dict[str, int] | None, list[tuple[str, int]]]:
    """(the start line's counters, the acks). A last line cut by the kill is ignored."""
    start = None
    acks: list[tuple[str, int]] = []
    for line in text.split("\n")[:-1]:  # only complete lines
        parts = line.split()
        if parts[0] == "start":
            start = {k: int(v) for k, v in (p.split("=") for p in parts[1:])}
        elif parts[0] == "ack":
            acks.append((parts[1], int(parts[2])))
        else:  # pragma: no cover - the worker prints nothing else
            raise AssertionError(f"unexpected output line {line!r}")
    return start, acks


def wait_for_start(out_path: Path, proc: subprocess.Popen, limit: float = 60.0) -> None:
    """Wait until the child printed its complete start line (or exited, or ``limit`` passed)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        text = out_path.read_text()
        if text.startswith("start") and "\n" in text:
            return
        time.sleep(0.005)


def check_object(name: str, kv: dict[str, object] | None, acked: set[int], where: str) -> int:
    """Assert the invariants for one object; return its committed ``a``."""
    if kv is None:
        assert not acked, f"{where}: {name} has no database but {len(acked)} acked calls"
        return 0
    a, b = kv.get("a", 0), kv.get("b", 0)
    assert a == b, f"{where}: {name} partial batch: a={a} b={b}"
    logs = {int(k[3:]): v for k, v in kv.items() if k.startswith("log")}
    assert set(kv) <= {"a", "b"} | {f"log{i}" for i in logs}, f"{where}: {name} stray keys"
    assert all(i == v for i, v in logs.items()), f"{where}: {name} log value mismatch"
    if a:
        assert a in logs, f"{where}: {name} partial batch: a={a} but log{a} missing"
    assert not logs or max(logs) == a, (
        f"{where}: {name} partial batch: log{max(logs)} committed without a={max(logs)} (a={a})"
    )
    assert set(logs) == set(range(1, a + 1)), (
        f"{where}: {name} logs are not exactly log1..log{a}: "
        f"missing {sorted(set(range(1, a + 1)) - set(logs))[:10]}"
    )
    if acked:
        assert a >= max(acked), f"{where}: {name} lost acked writes: a={a} < acked {max(acked)}"
        missing = sorted(acked - set(logs))
        assert not missing, f"{where}: {name} acked but missing log entries {missing[:10]}"
    return a


def kill_rounds(tmp_path: Path, folder: Path, rounds: int, rng: random.Random,
                args_for_round) -> tuple[dict[str, set[int]], dict[str, int], int, int]:
    """Start a worker on ``folder`` and SIGKILL it at a random moment, ``rounds`` times; check
    the files after each kill. ``args_for_round(rnd, rng)`` gives the worker's extra arguments.
    Returns (acknowledged calls per object, committed ``a`` per object, rounds whose child
    started, rounds with acknowledgements)."""
    files = object_files(folder)
    acked: dict[str, set[int]] = {name: set() for name in NAMES}
    committed = dict.fromkeys(NAMES, 0)
    rounds_with_acks = 0
    rounds_started = 0

    for rnd in range(rounds):
        extra = list(args_for_round(rnd, rng))
        delay = rng.uniform(0.05, 0.40)
        out_path, err_path = tmp_path / f"round{rnd}.out", tmp_path / f"round{rnd}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(folder), "--objects", str(OBJECTS), *extra],
                stdout=out, stderr=err,
            )
            try:
                # The delay counts from the child's start line, not from its spawn: on a busy
                # machine Python's start-up alone can take longer than the whole delay, and the
                # kills would then only ever hit start-up, never a commit.
                wait_for_start(out_path, proc)
                time.sleep(delay)
                # The workload never finishes: the child must still be running when killed.
                still_running = proc.poll() is None
                os.kill(proc.pid, signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
        where = f"round {rnd} (killed after {delay * 1000:.0f} ms, {' '.join(extra)})"
        assert still_running, f"{where}: the child exited by itself: {err_path.read_text()}"
        assert proc.returncode == -signal.SIGKILL, where

        start, acks = parse_output(out_path.read_text())
        if start is not None:
            rounds_started += 1
            # The child (through the runtime) saw exactly what the last check found on disk.
            assert start == committed, f"{where}: child started from {start}, disk had {committed}"
        if acks:
            rounds_with_acks += 1
        for name, i in acks:
            assert i > committed[name], f"{where}: {name} acked {i}, not past {committed[name]}"
            acked[name].add(i)

        for name in NAMES:
            committed[name] = check_object(name, read_kv(files[name]), acked[name], where)
    return acked, committed, rounds_started, rounds_with_acks


def reopen_and_check(folder: Path, committed: dict[str, int]) -> None:
    """A new Lab on ``folder`` must see, through the runtime, exactly the state on disk."""
    async def reopen() -> dict[str, dict]:
        lab = Lab(folder, storage="sqlite")
        try:
            ns = lab.bind(BINDING, Reader)
            return dict(zip(NAMES, await asyncio.gather(
                *(ns.getByName(name).snapshot() for name in NAMES)), strict=True))
        finally:
            await lab.close()

    for name, snap in asyncio.run(reopen()).items():
        a = committed[name]
        assert snap == {"a": a, "b": a, "logs": list(range(1, a + 1)), "log_values_ok": True}, name


def test_sigkill_loses_no_acknowledged_write_and_splits_no_batch(tmp_path):
    rng = random.Random(SEED)
    folder = tmp_path / "lab"
    began = time.monotonic()

    def args(rnd: int, rng: random.Random) -> list[str]:
        # max_open 2 < OBJECTS: connections are evicted meanwhile.
        return ["--per-object", str(rng.randint(1, 4)),
                "--max-open", str(rng.choice([64, 64, 2]))]

    acked, committed, rounds_started, rounds_with_acks = kill_rounds(
        tmp_path, folder, ROUNDS, rng, args)
    total = sum(len(s) for s in acked.values())
    print(f"\n{ROUNDS} kills, {rounds_started} after startup, {rounds_with_acks} with acks, "
          f"{total} acked calls, committed {committed}, {time.monotonic() - began:.1f}s")
    # The kills really interrupted work.
    assert total > 0
    assert rounds_with_acks >= ROUNDS // 3, (rounds_with_acks, ROUNDS)
    assert all(acked[name] for name in NAMES)
    reopen_and_check(folder, committed)


TASK_ROUNDS = 24


def test_sigkill_during_task_started_writes_loses_no_acknowledged_write(tmp_path):
    """Issue #19 item 1 under SIGKILL: every call starts a task (``asyncio.create_task`` or
    ``ctx.waitUntil``, alternately) whose first step makes the call's three writes, and
    returns at once. The reply must wait for those writes' commit: after each kill every
    acknowledged call is on disk, no batch split. Rounds alternate the KV and SQLite engines."""
    rng = random.Random(SEED + 19)
    folder = tmp_path / "lab"
    began = time.monotonic()

    def args(rnd: int, rng: random.Random) -> list[str]:
        return ["--per-object", str(rng.randint(1, 4)),
                "--task", ("create_task", "wait_until")[rnd // 2 % 2],
                *(["--sql"] if rnd % 2 else [])]

    acked, committed, rounds_started, rounds_with_acks = kill_rounds(
        tmp_path, folder, TASK_ROUNDS, rng, args)
    total = sum(len(s) for s in acked.values())
    print(f"\n{TASK_ROUNDS} kills during task-started writes, {rounds_started} after startup, "
          f"{rounds_with_acks} with acks, {total} acked calls, committed {committed}, "
          f"{time.monotonic() - began:.1f}s")
    assert total > 0
    assert rounds_with_acks >= TASK_ROUNDS // 3, (rounds_with_acks, TASK_ROUNDS)
    assert all(acked[name] for name in NAMES)
    reopen_and_check(folder, committed)


RACE_ROUNDS = 12


def test_two_processes_racing_for_one_folder_lose_no_acknowledged_write(tmp_path):
    """Issue #11 item 1 under SIGKILL: two workers start together on one folder and race for
    it; only one may own it (the folder lock), the other waits. The owner is killed at a
    random moment, the waiter takes the folder over (a dead process's lock is stale) and is
    killed in turn. Every acknowledged write of either process must be on disk, no batch
    split, and the two processes' acknowledgements never overlap: the second starts from
    everything the first acknowledged. Rounds alternate the KV and the SQLite engine."""
    rng = random.Random(SEED + 11)
    folder = tmp_path / "lab"
    files = object_files(folder)
    acked: dict[str, set[int]] = {name: set() for name in NAMES}
    committed = dict.fromkeys(NAMES, 0)
    takeovers = 0
    began = time.monotonic()

    for rnd in range(RACE_ROUNDS):
        sql = rnd % 2 == 1
        first_kill = rng.uniform(0.05, 0.4)  # after the first owner printed its start line
        second_kill = rng.uniform(0.05, 0.4)  # after the second one did (or 1 s)
        waiter_first = rng.random() < 0.2
        procs = []
        outs = []
        for p in range(2):
            out_path = tmp_path / f"race{rnd}-{p}.out"
            outs.append(out_path)
            with open(out_path, "wb") as out, open(tmp_path / f"race{rnd}-{p}.err", "wb") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, str(WORKER), str(folder), "--objects", str(OBJECTS),
                     "--per-object", str(rng.randint(1, 3)), "--wait-for-folder",
                     *(["--sql"] if sql else [])],
                    stdout=out, stderr=err,
                ))

        def wait_for_start(paths: list[Path], limit: float) -> int | None:
            deadline = time.monotonic() + limit
            while time.monotonic() < deadline:
                for i, path in enumerate(paths):
                    if path.stat().st_size:
                        return i
                time.sleep(0.01)
            return None

        try:
            # Kill the owner (mostly; sometimes the waiter) a little after it started; the
            # other then takes the folder over and is killed a little after its own start.
            owner = wait_for_start(outs, 10.0)
            assert owner is not None, f"round {rnd}: no worker started: " \
                f"{(tmp_path / f'race{rnd}-0.err').read_text()[-2000:]}"
            time.sleep(first_kill)
            first = 1 - owner if waiter_first else owner
            for index in (first, 1 - first):
                assert procs[index].poll() is None, (
                    f"round {rnd}: worker {index} exited by itself: "
                    f"{(tmp_path / f'race{rnd}-{index}.err').read_text()[-2000:]}")
            os.kill(procs[first].pid, signal.SIGKILL)
            procs[first].wait()
            if not waiter_first:
                wait_for_start([outs[1 - owner]], 3.0)
            time.sleep(second_kill)
            os.kill(procs[1 - first].pid, signal.SIGKILL)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
        where = f"race round {rnd} ({'sql' if sql else 'kv'}, " \
                f"{'waiter' if waiter_first else 'owner'} killed first)"

        parsed = [parse_output(path.read_text()) for path in outs]
        # Owners in the order they held the folder: the later one started from more, or from
        # as much when the first was killed before any commit landed; then the one that printed
        # its start line first (``owner``) held it first.
        order = sorted((i for i, (start, _) in enumerate(parsed) if start is not None),
                       key=lambda i: (sum(parsed[i][0].values()), i != owner))
        runs = [parsed[i] for i in order]
        if len(runs) == 2:
            takeovers += 1
            (_, first_acks), (second_start, second_acks) = runs
            for name in NAMES:
                mine = [i for n, i in first_acks if n == name]
                if mine:
                    assert second_start[name] >= max(mine), (
                        f"{where}: the second owner started {name} at {second_start[name]}, "
                        f"below the first owner's acknowledged {max(mine)}")
                theirs = {i for n, i in second_acks if n == name}
                assert not theirs & set(mine), (
                    f"{where}: both processes acknowledged the "
                    f"same calls of {name}: {sorted(theirs & set(mine))[:5]}")
        if runs:
            assert runs[0][0] == committed, (
                f"{where}: the first owner started from {runs[0][0]}, disk had {committed}")
        for _, acks in runs:
            for name, i in acks:
                acked[name].add(i)
        for name in NAMES:
            committed[name] = check_object(name, read_kv(files[name]), acked[name], where)

    total = sum(len(s) for s in acked.values())
    print(f"\n{RACE_ROUNDS} race rounds, {takeovers} takeovers by the waiting process, "
          f"{total} acked calls, committed {committed}, {time.monotonic() - began:.1f}s")
    assert takeovers >= RACE_ROUNDS // 2, takeovers
    assert total > 0 and all(acked[name] for name in NAMES)
