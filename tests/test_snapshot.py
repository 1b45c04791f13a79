"""``lab.snapshot()``: the live state of every object, exactly what a reader who folded the
event stream up to ``snapshot.seq`` knows (durable_lab/snapshot.py).

The oracle here is a fold of the recorded events written from the vocabulary in
docs/events.md, independent of the runtime's bookkeeping and of the panels' reducers. The
run (tests/snapshot_run.py) is stopped at every step of a paused lab and at loop passes of a
free-running one, and at each moment the snapshot must equal the fold.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import pytest
from snapshot_run import Account, make_lab, moments

from durable_lab import DurableObject, Lab, LabSnapshot, ObjectSnapshot
from durable_lab import events as ev


@dataclass
class Folded:
    """One object as a reader of the stream knows it."""

    status: str = "not started"
    incarnation: int = 0
    mailbox: dict = field(default_factory=dict)
    holder: str = ""
    running: int | None = None
    methods: dict = field(default_factory=dict)
    awaiting: dict = field(default_factory=dict)
    dirty: set = field(default_factory=set)
    batches: dict = field(default_factory=dict)
    held: dict = field(default_factory=dict)
    released: deque = field(default_factory=lambda: deque(maxlen=6))
    queued: int = 0
    finished: int = 0
    commits: int = 0
    resets: int = 0
    last_batch: tuple | None = None
    last_reset: str = ""


def fold(events: list[ev.RuntimeEvent]) -> dict[str, Folded]:
    objects: dict[str, Folded] = {}
    for e in events:
        if not e.object:
            continue
        s = objects.setdefault(e.object, Folded())
        if isinstance(e, ev.DeliveryQueued):
            s.mailbox[e.delivery] = e.method
            s.queued = e.queue_length
        elif isinstance(e, ev.InputGateLocked) and e.depth == 0:
            s.holder = e.holder
            number = e.holder.removeprefix("delivery ")
            if number.isdigit() and int(number) in s.mailbox:  # its first admission
                d = int(number)
                s.methods[d] = s.mailbox.pop(d)
                s.running = d
        elif isinstance(e, ev.InputGateUnlocked) and e.depth == 0:
            s.holder = ""
        elif isinstance(e, ev.DeliveryStarted):
            s.mailbox.pop(e.delivery, None)
            s.methods[e.delivery] = e.method
            s.running = e.delivery
            s.status = "live"
            s.queued -= 1
        elif isinstance(e, ev.TurnEnded):
            s.awaiting[e.delivery] = e.awaiting
            if s.running == e.delivery:
                s.running = None
        elif isinstance(e, ev.DeliveryResumed):
            s.awaiting.pop(e.delivery, None)
            s.running = e.delivery
        elif isinstance(e, ev.StorageOp):
            if e.delivery in s.awaiting:  # its code runs on after a read
                del s.awaiting[e.delivery]
                s.running = e.delivery
            if e.cache == "write":
                s.dirty |= {"*"} if e.op == "deleteAll" else set(e.keys)
        elif isinstance(e, ev.DeliveryFinished):
            s.awaiting.pop(e.delivery, None)
            s.methods.pop(e.delivery, None)
            if s.running == e.delivery:
                s.running = None
            s.finished += 1
        elif isinstance(e, ev.ReplyHeld):
            s.held[e.delivery] = e.waiting_for
        elif isinstance(e, ev.ReplyReleased):
            s.held.pop(e.delivery, None)
            s.released.append((e.delivery, e.ok))
        elif isinstance(e, ev.FlushStarted):
            s.batches[e.batch] = (*e.puts, *e.deletes, *(("*",) if e.delete_all else ()))
            s.dirty.clear()
        elif isinstance(e, ev.CommitDone):
            s.batches.pop(e.batch, None)
            s.commits += 1
            s.last_batch = (e.batch, e.keys, True)
            s.held = {d: max(0, n - 1) for d, n in s.held.items()}
        elif isinstance(e, ev.CommitFailed):
            s.last_batch = (e.batch, len(s.batches.pop(e.batch, ())), False)
        elif isinstance(e, ev.InstanceConstructed):
            s.incarnation = e.incarnation
            s.status = "live"
            s.batches.clear()
        elif isinstance(e, (ev.InstanceReset, ev.InstanceEvicted)):
            s.mailbox.clear()
            s.methods.clear()
            s.awaiting.clear()
            s.dirty.clear()
            s.held.clear()
            s.holder, s.running, s.queued = "", None, 0
            if isinstance(e, ev.InstanceEvicted):
                s.status = "evicted"
            elif e.reason == "labClosed":
                s.status = "closed"
            else:
                s.status = "reset"
                s.resets += 1
                s.last_reset = f"{e.reason}: {e.lost_writes} uncommitted write(s) lost"
    return objects


def as_folded(o: ObjectSnapshot) -> Folded:
    return Folded(status=o.status, incarnation=o.incarnation, mailbox=dict(o.mailbox),
                  holder=o.gate_holder, running=o.running, methods=o.methods,
                  awaiting=dict(o.awaiting), dirty=set(o.dirty), batches=dict(o.batches),
                  held=dict(o.held), released=deque(o.released, maxlen=6), queued=o.queued,
                  finished=o.finished, commits=o.commits, resets=o.resets,
                  last_batch=o.last_batch, last_reset=o.last_reset)


async def test_the_snapshot_is_the_fold_of_the_events_at_every_moment(tmp_path):
    lab = make_lab(tmp_path)
    recorded = lab.record()
    seen: list[str] = []
    # (A running turn is never seen between two steps: a step runs it to its next await.)
    interesting = {"mailbox": 0, "holder": 0, "awaiting": 0, "dirty": 0, "batches": 0,
                   "held": 0, "last_reset": 0}

    def at(moment: str) -> None:
        snap = lab.snapshot()
        assert isinstance(snap, LabSnapshot)
        assert snap.seq == lab.bus.seq == recorded.events[-1].seq if recorded.events else True
        folded = fold(list(recorded.events))
        for o in snap.objects:
            expected = folded.get(o.label, Folded())
            assert as_folded(o) == expected, f"{moment}: {o.label}"
            for name in interesting:
                if getattr(expected, name):
                    interesting[name] += 1
        seen.append(moment)

    try:
        outcomes = await moments(lab, at)
    finally:
        await lab.close()
    # A dozen paused steps, eight passes of the failing commit, and free passes until the burst
    # is done (how many depends on the machine's speed: 13 on a quiet one).
    assert sum(m.startswith("after step") for m in seen) >= 10, seen
    assert len(seen) >= 30, seen
    # The run went through every kind of state the snapshot describes, several times.
    assert all(n >= 2 for n in interesting.values()), interesting
    assert any(isinstance(o, Exception) for o in outcomes)  # the failed commit, the crash


async def test_a_lab_nobody_watched_gives_what_a_watcher_from_the_start_folded(tmp_path):
    """The runtime keeps what a snapshot reads whether or not events are built: run the same
    seeded run twice, watched and unwatched, and compare the snapshots moment by moment (in
    memory: SQLite's I/O thread would make the two runs' timing differ)."""
    watched_lab, quiet_lab = make_lab(tmp_path, memory=True), make_lab(tmp_path, memory=True)
    recorded = watched_lab.record()
    watched: list[LabSnapshot] = []
    quiet: list[LabSnapshot] = []
    try:
        await moments(watched_lab, lambda _m: watched.append(watched_lab.snapshot()),
                      free_passes=0)
        recorded.close()
        assert not quiet_lab.bus.active
        await moments(quiet_lab, lambda _m: quiet.append(quiet_lab.snapshot()), free_passes=0)
    finally:
        await watched_lab.close()
        await quiet_lab.close()
    assert len(watched) == len(quiet) > 20
    for a, b in zip(watched, quiet, strict=True):
        assert [as_folded(o) for o in a.objects] == [as_folded(o) for o in b.objects]


async def test_a_panel_made_while_calls_wait_sees_them_in_the_snapshot(memory_lab):
    lab = memory_lab
    lab.bind("ACCOUNT", Account)
    stub = lab.env.ACCOUNT.getByName("alice")
    lab.scheduler.note_paused_calls = False
    lab.pause()
    calls = [asyncio.ensure_future(stub.deposit(n)) for n in (1, 2)]
    await lab.scheduler.settle()
    await lab.step()  # the constructor
    snap = lab.snapshot(stub)
    assert snap.mailbox == ((1, "deposit"), (2, "deposit")) and snap.queued == 2
    assert snap.status == "live" and snap.gate_holder == "" and snap.running is None
    assert [kind for _, kind in snap.gate_waiters] == ["admit", "admit"]
    lab.resume()
    assert await asyncio.gather(*calls) == [1, 3]
    snap = lab.snapshot("ACCOUNT:alice")
    assert snap.mailbox == () and snap.finished == 2 and snap.commits >= 1


async def test_snapshot_storage_reads_the_values_at_the_same_seq(tmp_path):
    lab = make_lab(tmp_path)
    stub = lab.env.ACCOUNT.getByName("alice")
    try:
        await stub.deposit(7)
        lab.pause()
        lab.scheduler.note_paused_calls = False
        call = asyncio.ensure_future(stub.deposit(3))
        while not lab.snapshot(stub).dirty:
            assert await lab.step() is not None
        snap = await lab.snapshot_storage(stub)
        # The pending writes are in the values: what the object sees, before the commit.
        assert snap.dirty == ("balance", "entry-10")
        assert dict(snap.storage) == {"balance": 10, "entry-7": 7, "entry-10": 3}
        assert snap.seq == lab.bus.seq
        lab.resume()
        await call
        await lab.wait_idle()
        assert dict((await lab.snapshot_storage("ACCOUNT:alice")).storage) == dict(snap.storage)
    finally:
        await lab.close()


async def test_a_failed_commit_counts_the_writes_it_lost(memory_lab):
    """Lesson 03: the deposit whose commit failed is lost, and the reset says so."""
    lab = memory_lab
    lab.bind("ACCOUNT", Account)
    recorded = lab.record()
    stub = lab.env.ACCOUNT.getByName("alice")
    await stub.deposit(100)
    lab.fail_next_commit(stub)
    with pytest.raises(Exception, match="storage write"):
        await stub.deposit(50)
    await lab.wait_idle()
    reset = recorded.of(ev.InstanceReset)[-1]
    assert reset.lost_writes == 2  # balance and entry-150: the batch that never landed
    snap = lab.snapshot(stub)
    assert snap.last_reset == "outputGateBroken: 2 uncommitted write(s) lost"
    assert snap.status == "reset" and snap.resets == 1
    assert snap.last_batch == (2, 2, False)
    assert await lab.peek(stub) == {"balance": 100, "entry-100": 100}


async def test_snapshot_refuses_an_object_the_lab_never_saw(memory_lab):
    with pytest.raises(LookupError, match="has not seen 'NOPE:x'"):
        memory_lab.snapshot("NOPE:x")


class Slow(DurableObject):
    async def nap(self) -> None:
        await self.ctx.storage.get("missing")  # a read the input gate waits for


async def test_the_none_model_has_no_gate_but_still_a_mailbox(tmp_path):
    lab = Lab(storage="memory", model="none")
    lab.bind("SLOW", Slow)
    recorded = lab.record()
    stub = lab.env.SLOW.getByName("s")
    try:
        calls = [asyncio.ensure_future(stub.nap()) for _ in range(3)]
        snaps = []
        for _ in range(6):
            snaps.append(lab.snapshot(stub))
            assert as_folded(snaps[-1]) == fold(list(recorded.events)).get("SLOW:s", Folded())
            await asyncio.sleep(0)
        await asyncio.gather(*calls)
    finally:
        await lab.close()
    assert any(s.mailbox for s in snaps) and any(s.awaiting for s in snaps)
