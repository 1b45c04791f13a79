# %% tags=["claim-kit"]
# The source of notebooks/01_ownership_ids_stubs.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, column, settled, text_of

# isort: split

# %% [markdown]
# # 01 · Ownership, ids and stubs
#
# **Covers:** ids (`idFromName`, `newUniqueId`, `idFromString`), stubs, the one-owner rule,
# and what goes wrong without it: the same counter run "sync everywhere" (`model="none"`:
# a plain asyncio key-value client, no gates) loses updates, and the history checker
# (`durable_lab.check`) proves it.
# **You will be able to:** get a stub for an object, explain why all calls for one id reach
# one instance, and use `lost_updates` / `linearizable` to judge a run.
# **Scenario:** a counter hit by ten clients at once, in three memory labs with `seed=1`.

# %%
import asyncio

import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab
from durable_lab.check import linearizable, lost_updates


class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        await self.ctx.storage.put("n", n + by)
        return n + by

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0

# %% [markdown]
# ## Ids: a name always means the same object
#
# **Predict:** `idFromName("room-1")` twice: the same id or two ids? And in a *second* lab?

# %%
lab = Lab(storage="memory", seed=1)
COUNTER = lab.bind("COUNTER", Counter)
a, b = COUNTER.idFromName("room-1"), COUNTER.idFromName("room-1")
print(a == b, str(a)[:16], "...")

other = Lab(storage="memory", seed=1)
print("another lab, same name:", other.bind("COUNTER", Counter).idFromName("room-1") == a)
await other.close()

u = COUNTER.newUniqueId()
print("a unique id has no name:", u.name, "| it prints as", len(str(u)), "hex digits")
print("and parses back:", COUNTER.idFromString(str(u)) == u)

# %% [markdown]
# Ids made from a name are derived from it (an HMAC, as in workerd), so every Worker anywhere
# computes the same id for `room-1` and reaches the same object.
#
# ## A stub does not start the object; the first call does
#
# **Predict:** after `COUNTER.get(id)` but before any call, is there a live instance?

# %% tags=["claim"]
claim(
    "every Worker anywhere computes the same id for `room-1`",
    output=r"^True [0-9a-f]{16} \.\.\.\nanother lab, same name: True\n",
)

# %%
stub = COUNTER.get(a)
print([(o.label, o.state) for o in await lab.objects()])
await stub.increment()
print([(o.label, o.state, o.incarnations) for o in await lab.objects()])

# %% tags=["claim"]
claim(
    "A stub does not start the object; the first call does",
    output=r"^\[\('COUNTER:room-1', 'not started'\)\]\n\[\('COUNTER:room-1', 'idle', 1\)\]",
)

# %% [markdown]
# ## See it: one cell per object
#
# The fleet view draws one cell per object the lab has seen, coloured by its queue.
# **Predict:** we call `room-2`, `room-3`, `room-1` and `room-2` again. How many cells?

# %%
fleet = widgets.fleet(lab)          # hover a cell: its queue, calls in flight, resets
fleet

# %%
for name in ("room-2", "room-3", "room-1", "room-2"):
    await COUNTER.getByName(name).increment()
print([(o.label, o.incarnations) for o in await lab.objects()])

# %% [markdown]
# Three cells, not four: every call for `room-2` reached the one instance of `room-2`, wherever
# the caller was. A name is the address of exactly one object.
#
# ## One object, several lives
#
# An instance is not the object: it can be dropped from memory (evicted) and a new one
# constructed on the next call, with the same id and the same storage. **Predict:** after an
# eviction, what does the object view's *incarnation* say, and what does the counter return?

# %% tags=["claim"]
claim("Three cells, not four", page=(".dl-fleet", "^3 objects"))
await settled(lab)
labels = sorted(column(fleet.source, "label"))
assert labels == ["COUNTER:room-1", "COUNTER:room-2", "COUNTER:room-3"], labels
assert "3 objects" in text_of(fleet), text_of(fleet)

# %%
view = widgets.object_view(lab, stub)   # the object of room-1, large
view

# %%
await lab.evict(stub)                   # drop the instance from memory
print("after eviction:", await stub.increment())   # a new instance, the same storage
print([(o.label, o.incarnations) for o in await lab.objects() if o.name == "room-1"])

# %% [markdown]
# Incarnation 2, and the count went on from storage: memory is a cache of the object, storage
# is the object. (Lesson 05 comes back to this.)

# %% tags=["claim"]
claim(
    "Incarnation 2, and the count went on from storage",
    output=r"after eviction: 3\b",
    page=(".dl-objectview",
          r"incarnation 2\b"),
)
await settled(lab)
assert view.state.incarnation == 2, view.state
assert "incarnation 2" in text_of(view), text_of(view)[:200]

# %% [markdown]
# ## Ten clients, one counter, three runtimes
#
# `Lab(model=...)` runs the *same class* under different rules:
#
# - `"gates"`: Cloudflare's (input gate, output gate, coalescing);
# - `"none"`: "sync everywhere": every `get` is a round trip to storage, every `put` its own
#   commit, nothing keeps requests apart. This is what a fleet of stateless workers talking to
#   a shared key-value store looks like;
# - `"serial"`: one request at a time, start to finish.
#
# **Predict:** ten `increment()` calls at once under each model. Where does the counter end?

# %%
for model in ("gates", "none", "serial"):
    run = Lab(storage="memory", seed=1, model=model, record=True)
    counter = run.bind("COUNTER", Counter).getByName("x")
    results = await asyncio.gather(*(counter.increment() for _ in range(10)))
    print(f"{model:>6}: replies {sorted(results)} -> value {await counter.value()}")
    await run.close()

# %% [markdown]
# Without gates, most increments read the same old value and overwrite each other.
#
# ## The history checker
#
# `Lab(record=True)` keeps every client call; `lost_updates` finds increments that returned
# the same value, and `linearizable` asks: *could one copy of the counter, answering one call
# at a time, have given these answers?*

# %% tags=["claim"]
claim(
    "Without gates, most increments read the same old value and overwrite each other",
    output=r"gates: replies \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10\] -> value 10\n\s*none: replies \[1, "
           r"1, 1, [^\]]*\] -> value [1-5]\nserial: replies \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10\] -> "
           "value 10",
)

# %%
run = Lab(storage="memory", seed=1, model="none", record=True)
counter = run.bind("COUNTER", Counter).getByName("x")
await asyncio.gather(*(counter.increment() for _ in range(10)))
print(lost_updates(run.history()))
print()
print(linearizable(run.history()))
await run.close()

# %%
run = Lab(storage="memory", seed=1, model="gates", record=True)
counter = run.bind("COUNTER", Counter).getByName("x")
await asyncio.gather(*(counter.increment() for _ in range(10)))
print(linearizable(run.history()))
await run.close()

# %% [markdown]
# **Why it works with gates:** every call for `x` reaches **one** instance, in one place, so
# that instance can decide the order. A stateless Worker fleet has no such place: the
# key-value store sees interleaved reads and writes from many machines.

# %% tags=["claim"]
claim("**Why it works with gates:**", output="^Linearizable: all 10 calls")

# %% [markdown]
# ## Exercise 01 · a counter without gates
#
# Make `LockedCounter` lose no update **even under `model="none"`**. There is no input gate
# there, so you have to build one: an `asyncio.Lock` per object, held from the read to the
# write. (This works only because all calls for one id reach one instance: the one-owner
# rule at work.) The check sends 10 increments at once on instant storage, then on slow
# storage (5 ms, then 2 s of lab time per write: only an awaited put is sure to have landed),
# and evicts the object once.

# %% exercise="01"
# Filled in from course/starters/ex01.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [02 · the input gate](02_input_gate.ipynb): what it blocks, and what not.
