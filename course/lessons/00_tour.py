# %% tags=["claim-kit"]
# The source of notebooks/00_tour.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, column, panel_of, settled, text_of
from IPython.display import display  # a kernel's built-in; a linter must be told

# isort: split

# %% [markdown]
# # 00 · A five-minute tour of Durable Objects
#
# **Covers:** what a Durable Object is (one instance per id, its own storage), the input gate,
# write coalescing and the output gate, each shown on a counter.
# **You will be able to:** write a Durable Object class, call it through a stub, and read
# the runtime's event timeline to see what it did.
# **Scenario:** a page-view counter, in an in-memory lab (`Lab(storage="memory", seed=1)`),
# so every run prints the same timeline.
#
# Each section asks you to **predict** first. Write your guess down (or say it out loud),
# then run the cell.

# %%
import asyncio

import durable_lab
from durable_lab import DurableObject, Lab
from durable_lab.tour import describe


def show(events, *, only=None):
    """Print the events in plain words, one per line (gate bookkeeping left out)."""
    for e in events:
        line = describe(e)
        if line and (only is None or e.object in only):
            print(f"{e.object:<18} {line}")

# %% [markdown]
# ## A Durable Object is a class, and every name gets exactly one instance
#
# `lab.bind("COUNTER", Counter)` makes a *binding* (on Cloudflare: `env.COUNTER`).
# `getByName("page-1")` gives a *stub*: a handle on the one object called `page-1`. Calls
# through the stub are messages to that object; it runs them one at a time, with its own
# storage.

# %%
class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0


lab = Lab(storage="memory", seed=1)
COUNTER = lab.bind("COUNTER", Counter)
page = COUNTER.getByName("page-1")
print(await page.increment(), await page.increment(), await page.value())

# %% [markdown]
# ## 1. Two increments at the same time
#
# **Predict:** two clients call `increment()` at the same moment. Each reads `n`, then writes
# `n + 1`. What do they get back: `[1, 1]` or `[1, 2]`?

# %%
page2 = COUNTER.getByName("page-2")          # a fresh counter: its first read goes to storage
rec = lab.record()
print(await asyncio.gather(page2.increment(), page2.increment()))
rec.close()
show(rec.events)

# %% [markdown]
# `[1, 2]`: no update is lost. Look for *"awaits storage: gate
# stays CLOSED"*: while the first call waits for its read, the **input gate** keeps the second
# out, so read and write of one call are never split by another call.

# %% tags=["claim"]
claim(
    "awaits storage: gate stays CLOSED",
    output=r"^\[1, 2\]\n[\s\S]*call \d+ awaits storage: gate stays CLOSED",
)

# %% [markdown]
# ## 2. A timer between read and write
#
# **Predict:** the same counter, but it waits 10 ms (lab time) between the read and the write,
# as code that calls an API would. Two calls at once: `[1, 2]` again?

# %%
class SlowCounter(Counter):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await durable_lab.sleep(0.01)    # a non-storage await: a timer, a fetch, an object
        self.ctx.storage.put("n", n + by)
        return n + by


slow = lab.bind("SLOW", SlowCounter).getByName("page-1")
rec = lab.record()
print(await asyncio.gather(slow.increment(), slow.increment()))
rec.close()
show(rec.events)
print("value:", await slow.value())

# %% [markdown]
# `[1, 1]`: one increment is **lost**. *"awaits io: gate OPENS"*: awaiting anything that is
# not storage lets the next call in. "Single-threaded" does not mean "no races". Lesson 02 is
# all about this.

# %% tags=["claim"]
claim("awaits io: gate OPENS", output=r"\[1, 1\][\s\S]*awaits io: gate OPENS[\s\S]*value: 1")

# %% [markdown]
# ## 3. A hundred writes in one call
#
# **Predict:** a call does 100 `put()`s in a loop, each one awaited. How many commits
# (transactions) reach storage: 100, or fewer?

# %%
class Bulk(DurableObject):
    async def write_many(self, count):
        for i in range(count):
            await self.ctx.storage.put(f"item:{i}", i)
        return count


bulk = lab.bind("BULK", Bulk).getByName("b")
rec = lab.record()
await bulk.write_many(100)
rec.close()
print("commits:", sum(e.kind == "CommitDone" for e in rec.events))

# %% [markdown]
# **One.** Writes made in the same turn are *coalesced* into one atomic batch; `await put()`
# does not even end the turn. Lesson 04 measures what that saves.

# %% tags=["claim"]
claim("**One.**", output="(?m)^commits: 1$")

# %% [markdown]
# ## 4. A commit that fails
#
# **Predict:** we make the next commit of `page-1` fail, then call `increment()`. Does the
# caller get a number back (the write "happened"), or an error?

# %%
lab.faults.fail_next_commit(page)
rec = lab.record()
try:
    print("reply:", await page.increment())
except Exception as exc:
    print("the caller got an error:", exc)
rec.close()
show(rec.events)
fresh = COUNTER.getByName("page-1")          # the old stub is broken after a reset
print("a new stub reads:", await fresh.value())

# %% [markdown]
# The reply was **held** by the output gate until the commit, the commit failed, and the
# caller got an error instead of a false "done". The object restarted from what was committed.
# Lesson 03 is about this promise.

# %% tags=["claim"]
claim(
    "The reply was **held** by the output gate until the commit, the commit failed",
    output=r"^the caller got an error[\s\S]*reply to call \d+ HELD by the output "
           r"gate[\s\S]*commit #\d+ FAILED[\s\S]*a new stub reads: 2",
)

# %% [markdown]
# ## Optional: the panels
#
# If the course panels are installed (`pip install durable_lab[widgets]`), this shows a live
# dashboard of the lab: gates, queues, commits. Without them the cell just says so; everything
# in the lessons works without it. The next cell then sends a few seconds of traffic (four
# clients, mostly to one hot counter) so there is something to watch: mailbox chips, the gate
# opening and closing, batches flying to storage, replies held and released. Try **Pause** and
# **Step +1** while it runs.

# %%
try:
    import widgets
except ImportError:
    print("The panels are not installed: the lessons print timelines instead.")
    widgets = None
if widgets is not None and hasattr(widgets, "dashboard"):
    display(lab.dashboard(COUNTER.getByName("hot")))

# %%
from durable_lab.workload import run_workload

result = await run_workload(COUNTER, method="increment", clients=4, per_client=30, rate=10,
                            objects=3, names=["hot", "warm", "cold"], distribution="hot",
                            seed=1)
print(result.summary())

# %% tags=["claim"]
claim(
    "mailbox chips, the gate opening and closing, batches flying to storage, replies held and rele"
    "ased",
    page=(".dl-releasedbox",
          "✓ ok"),
)
await settled(lab)
board = panel_of(lab, "dashboard")
lanes = column(board.timeline.gate_spans, "lane")
for lane in ("input gate", "commit", "output gate"):
    assert lane in lanes, f"no {lane!r} span on the dashboard's timeline: {set(lanes)}"
hot = board.object_view.state
assert hot.label == "COUNTER:hot" and hot.finished >= 30 and hot.commits >= 1, hot
assert "✓ ok" in text_of(board.object_view), text_of(board.object_view)[:300]

# %% [markdown]
# ## Exercise 00 · a counter that remembers
#
# `MyCounter` below keeps its count in a field (`self.count`). Run the cell: the check runs
# your class through hidden scenarios (two names, an eviction and the increments after it,
# concurrent calls) and says what happens. Then fix the class so that every scenario passes:
# the count must live in `self.ctx.storage`, per object. (Writing a field through to storage
# is not enough: after an eviction the field starts over, and the check increments again.)

# %% exercise="00"
# Filled in from course/starters/ex00.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [01 · ownership, ids and stubs](01_ownership_ids_stubs.ipynb): why one owner per
# id is the whole trick.
