# %% tags=["claim-kit"]
# The source of notebooks/04_write_coalescing.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, settled, text_of

# isort: split

# %% [markdown]
# # 04 · Write coalescing: n writes, one commit
#
# **Covers:** writes of one turn form one atomic batch; `await put()` does not end the turn;
# `sync()` does; what each commit costs (`Lab(commit_latency=...)`), measured with
# `lab.record()`.
# **You will be able to:** predict how many commits a handler makes, measure it, and write
# bulk updates that are atomic and fast.
# **Scenario:** a handler writing n keys, with each commit costing 5 ms of lab time
# (`commit_latency=0.005`, `clock="auto"`), so the numbers are the same on every machine.

# %%
import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab


class Writer(DurableObject):
    # Every call writes new values (call number 1, 2, 3, ...): a put() of the value a key
    # already holds changes nothing, so the cache drops it and it is never committed.
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0

    def new_value(self):
        self.calls += 1
        return self.calls

    async def one_turn(self, n):
        v = self.new_value()
        for i in range(n):
            self.ctx.storage.put(f"k{i}", v)         # all in one turn
        return n

    async def awaited_puts(self, n):
        v = self.new_value()
        for i in range(n):
            await self.ctx.storage.put(f"k{i}", v)   # await put(): still the same turn
        return n

    async def sync_each(self, n):
        v = self.new_value()
        for i in range(n):
            self.ctx.storage.put(f"k{i}", v)
            await self.ctx.storage.sync()            # wait for the commit: ends the turn
        return n


async def measure(method, n):
    """Commits and lab-time latency of one call of Writer.<method>(n)."""
    lab = Lab(storage="memory", seed=1, clock="auto", commit_latency=0.005)
    stub = lab.bind("W", Writer).getByName("w")
    await stub.one_turn(0)                            # construct it first
    rec = lab.record()
    start = lab.clock.now()
    await getattr(stub, method)(n)
    elapsed = lab.clock.now() - start
    rec.close()
    commits = sum(e.kind == "CommitDone" for e in rec.events)
    await lab.close()
    return commits, elapsed

# %% [markdown]
# **Predict:** for n = 10, how many commits does each method make?
# `one_turn`: ___ `awaited_puts`: ___ `sync_each`: ___

# %%
for method in ("one_turn", "awaited_puts", "sync_each"):
    commits, elapsed = await measure(method, 10)
    print(f"{method:>13}: {commits:>2} commits, {elapsed * 1000:5.0f} ms")

# %% [markdown]
# A `put()` changes the in-memory cache at once and returns an already-finished awaitable, so
# awaiting it does not end the turn. `sync()` waits for storage: the turn ends, the batch is
# committed, and the next write starts a new batch. (Each call writes new values, the number
# of the call: a `put()` of the value a key already holds changes nothing, and the cache drops
# it. Rewriting the same values would commit nothing at all.)
#
# ## Watch a batch form
#
# **Predict:** `one_turn(12)` on a lab whose commits take half a second, in slow motion. How
# many keys are pending at most? How many batches fly to storage? When does the reply go?

# %% tags=["claim"]
claim(
    "`sync()` waits for storage: the turn ends, the batch is committed, and the next write starts "
    "a new batch",
    output=r"one_turn:\s+1 commits[\s\S]*awaited_puts:\s+1 commits[\s\S]*sync_each:\s+10 commits",
)

# %%
watched = Lab(storage="memory", seed=1, commit_latency=0.5)
writer = watched.bind("W", Writer).getByName("w")
batch_view = widgets.watch(watched, writer, storage=True, speed=3)
batch_view

# %%
print(await writer.one_turn(12))
batch_view.full_speed()

# %% [markdown]
# Twelve keys turned orange in *Pending writes* within one turn, left the cache together as
# **one** batch (blue, 12 keys), and the reply waited under the output gate until that batch
# landed. The storage inspector shows each key with its value and the batch it went in.
#
# ## Latency against n
#
# **Predict:** how does the latency of each method grow with n?

# %% tags=["claim"]
claim(
    "left the cache together as **one** batch (blue, 12 keys), and the reply waited under the outp"
    "ut gate until that batch landed",
)
await settled(watched)
gates = batch_view.timeline.gate_spans.data
spans = [(lane, lo, hi, d) for lane, lo, hi, d in zip(gates["lane"], gates["left"],
                                                  gates["right"], gates["detail"], strict=True)]
commits = [s for s in spans if s[0] == "commit"]
assert len(commits) == 1 and ": 12 key(s)" in commits[0][3], commits
held = [s for s in spans if s[0] == "output gate"]
assert held and held[0][1] <= commits[0][1] and held[0][2] >= commits[0][2], (held, commits)
state = batch_view.object_view.state
assert state.last_batch is not None and state.last_batch[1:] == (12, True), state.last_batch

# %% tags=["claim"]
claim(
    "The storage inspector shows each key with its value and the batch it went in",
    page=(".dl-storage-inspector",
          r"k11 1 committed batch \d"),
)
await settled(watched)
rows = batch_view.storage.rows()
assert sorted(k for k, _ in rows) == sorted(f"k{i}" for i in range(12)), rows
assert len({ks.batch for _, ks in rows}) == 1 and rows[0][1].batch, rows
shown = text_of(batch_view.storage)
assert all(f"k{i} 1 committed batch" in shown for i in range(12)), shown

# %%
print(f"{'n':>5} | {'one_turn':>14} | {'sync_each':>16}")
print("-" * 43)
for n in (1, 10, 50, 100):
    c1, t1 = await measure("one_turn", n)
    c2, t2 = await measure("sync_each", n)
    print(f"{n:>5} | {c1:>3} commit {t1 * 1000:4.0f} ms | {c2:>3} commits {t2 * 1000:4.0f} ms")

# %% [markdown]
# Flat against linear: the whole turn costs one commit. The metrics panel shows the same on a
# live lab: every dot is one call, latency against the writes it made.

# %% tags=["claim"]
claim("Flat against linear", output=r"100 \|\s+1 commit\s+5 ms \|\s+100 commits\s+500 ms")

# %%
live = Lab(storage="memory", seed=1, commit_latency=0.005)
live_writer = live.bind("W", Writer).getByName("w")
live_metrics = widgets.metrics(live)
live_metrics

# %%
for n in (1, 2, 5, 10, 20, 40):
    for _ in range(3):
        await live_writer.one_turn(n)       # the flat row of dots
        await live_writer.sync_each(n)      # the rising one: a commit per write

# %% tags=["claim"]
claim("the rising one: a commit per write")
await settled(live)
dots = live_metrics.latency.data
points = list(zip(dots["method"], dots["writes"], dots["ms"], strict=True))
assert len(points) == 36, f"{len(points)} dots for 36 calls"
rising = {n: max(ms for m, w, ms in points if m == "sync_each" and w == n)
          for n in (1, 2, 5, 10, 20, 40)}
flat = max(ms for m, w, ms in points if m == "one_turn")
assert rising[40] > 2 * rising[5] > 2 * rising[1] and rising[40] >= 40 * 5, rising
assert flat < rising[40] / 4, (flat, rising)
assert "latency of 36 recent calls" in text_of(live_metrics), text_of(live_metrics)

# %% [markdown]
# Two rows of dots: `one_turn` stays flat whatever n is, `sync_each` climbs by a commit per
# write. The batch-size histogram (log scale) shows both kinds of commits: many one-key
# commits from `sync_each` and a few big ones from `one_turn`.
#
# And the batch is **atomic**: either
# all n keys are stored or none, which `sync_each` gives up as well (a failure after key 3
# leaves a half-written state).
#
# **Predict:** does the *reply* of `one_turn` wait for the commit, even though the handler
# never awaited anything? (Lesson 03 says ...)

# %% tags=["claim"]
claim("many one-key commits from `sync_each` and a few big ones from `one_turn`")
await settled(live)
bars = dict(zip(live_metrics.batches.data["bin"], live_metrics.batches.data["count"], strict=True))
assert bars["1"] >= 3 * (1 + 2 + 5 + 10 + 20 + 40), bars
assert bars["17-64"] == 6 and bars["9-16"] == 3, bars

# %%
lab = Lab(storage="memory", seed=1, clock="auto", commit_latency=0.005)
stub = lab.bind("W", Writer).getByName("w")
rec = lab.record()
await stub.one_turn(3)
rec.close()
print([e.kind for e in rec.events if e.kind in ("DeliveryFinished", "ReplyHeld",
                                                 "CommitDone", "ReplyReleased")])

# %% tags=["claim"]
claim(
    "does the *reply* of `one_turn` wait for the commit",
    output=r"\['DeliveryFinished', 'ReplyHeld', 'CommitDone', 'ReplyReleased'\]",
)

# %% [markdown]
# ## Exercise 04 · n writes, one commit
#
# `Store.save_all(items)` must store a whole dict atomically, in one commit. The starter
# "makes sure" each item is saved. Run the check, read what it measured, and fix it.

# %% exercise="04"
# Filled in from course/starters/ex04.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [05 · alarms and the object lifecycle](05_alarms_lifecycle.ipynb).
