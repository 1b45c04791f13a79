# %% tags=["claim-kit"]
# The source of notebooks/05_alarms_lifecycle.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, drawn_text, settled, text_of

# isort: split

# %% [markdown]
# # 05 · Alarms and the object lifecycle
#
# **Covers:** eviction (`lab.evict`, `Lab(idle_timeout=...)`): the constructor runs again and
# fields start over, storage stays; alarms (`setAlarm`, one per object, durable); retries with
# backoff when the handler fails (`lab.faults.fail_next_alarm`); at-least-once delivery.
# **You will be able to:** tell in-memory state from durable state, schedule work with an
# alarm, and write an alarm handler that is safe to run twice.
# **Scenario:** a session object and a reminder, on memory labs with a manual clock
# (`clock="manual"`, time moves with `lab.clock.advance(s)`) or an auto clock
# (`clock="auto"`: jumps to the next timer, so a minute of retries takes no time).

# %%
import asyncio

import durable_lab
import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab
from durable_lab.tour import describe


def show(events, *, only=None):
    """Print the events in plain words, one per line (gate bookkeeping left out)."""
    for e in events:
        line = describe(e)
        if line and (only is None or e.object in only):
            print(f"{e.object:<18} {line}")

# %% [markdown]
# ## Eviction: memory is a cache, storage is the truth
#
# Cloudflare evicts objects that have been idle for a while (70-140 s in production, 10 s in
# local workerd). **Predict:** `visit()` counts in a field *and* in storage. After an eviction,
# what do the two counts say?

# %%
class Session(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.in_memory = 0
        print("  constructor runs")

    async def visit(self):
        self.in_memory += 1
        stored = (await self.ctx.storage.get("visits")) or 0
        self.ctx.storage.put("visits", stored + 1)
        return {"in_memory": self.in_memory, "stored": stored + 1}


lab = Lab(storage="memory", seed=1, clock="manual", idle_timeout=10)
session = lab.bind("SESSIONS", Session).getByName("ada")
session_view = widgets.watch(lab, "SESSIONS:ada", storage=True)
session_view

# %% [markdown]
# The panel follows `SESSIONS:ada` across instances: its header shows the *incarnation* and
# whether an instance is live or evicted; the storage inspector shows what survives.

# %%
print(await session.visit())
print(await session.visit())
await lab.evict(session)
print("-- evicted --")
print(await session.visit())

# %% tags=["claim"]
claim(
    "its header shows the *incarnation* and whether an instance is live or evicted; the storage in"
    "spector shows what survives",
    output=r"-- evicted --\s+constructor runs\s+\{'in_memory': 1, 'stored': 3\}",
)
await settled(lab)
state = session_view.object_view.state
assert (state.incarnation, state.status) == (2, "live"), state
assert "incarnation 2" in text_of(session_view.object_view), text_of(session_view)[:200]
assert "visits 3 committed" in text_of(session_view.storage), text_of(session_view.storage)

# %% [markdown]
# **Predict:** with `idle_timeout=10`, does the object survive 5 s of silence? 15 s?

# %%
rec = lab.record()
lab.clock.advance(5)
await lab.wait_idle()
print(await session.visit())
lab.clock.advance(15)
await lab.wait_idle()
print(await session.visit())
rec.close()
print([e.reason for e in rec.events if e.kind == "InstanceEvicted"])
print([(o.label, o.state, o.incarnations) for o in await lab.objects()])

# %% [markdown]
# ## Alarms: one wake-up call per object
#
# `self.ctx.storage.setAlarm(ms)` asks the runtime to call `alarm(alarm_info)` at that time
# (epoch milliseconds; `durable_lab.now()` is the lab clock in seconds). The alarm is written
# like any other storage write: durable, committed with the turn.
#
# **Predict:** we set an alarm 30 s ahead, then evict the object. Does the alarm still fire?

# %%
class Reminder(DurableObject):
    async def remind_in(self, seconds, text):
        self.ctx.storage.put("text", text)
        self.ctx.storage.setAlarm(durable_lab.now() * 1000 + seconds * 1000)

    async def alarm(self, alarm_info):
        text = await self.ctx.storage.get("text")
        print(f"  t={durable_lab.now() - T0:5.1f}s  alarm! {text!r} "
              f"(retryCount={alarm_info.retryCount})")
        self.ctx.storage.put("fired", True)


T0 = lab.clock.now()
reminder = lab.bind("REMINDERS", Reminder).getByName("ada")
reminder_view = widgets.watch(lab, "REMINDERS:ada")   # watch the alarm arrive
reminder_view

# %%
await reminder.remind_in(30, "stand up")
await lab.evict(reminder)
for _ in range(4):
    lab.clock.advance(10)
    await lab.wait_idle()
    print(f"t={lab.clock.now() - T0:4.0f}s")

# %% [markdown]
# It fired at t=30 s, on a fresh instance: in the panel, an `alarm` delivery arrived in the
# mailbox of incarnation 2 (the timeline lane of that delivery is labelled `alarm`). An object
# has **one** alarm: `setAlarm` again *replaces* it (remember that for the exercise).
#
# ## When the handler fails: retries
#
# **Predict:** the alarm handler throws twice. When does it run again, and how many times?

# %% tags=["claim"]
claim(
    "It fired at t=30 s, on a fresh instance: in the panel, an `alarm` delivery arrived in the mai"
    "lbox of incarnation 2",
    output=r"(?m)^  t= 30\.0s  alarm! 'stand up' \(retryCount=0\)$",
    page=(".dl-objectview[data-object='REMINDERS:ada']",
          "incarnation 2 · 2 answered"),
)
await settled(lab)
state = reminder_view.object_view.state
assert state.incarnation == 2, state
seg = reminder_view.timeline.segments.data
alarms = {d for d, m in zip(seg["delivery"], seg["method"], strict=True) if m == "alarm"}
kinds = {k for d, k in zip(seg["delivery"], seg["kind"], strict=True) if d in alarms}
assert len(alarms) == 1 and "queued" in kinds, dict(seg)

# %% tags=["claim"]
claim("the timeline lane of that delivery is labelled `alarm`")
await settled(lab)
drawn = drawn_text(reminder_view.timeline)
assert "alarm" in drawn, f"the timeline draws no 'alarm' label: {drawn[:300]}"

# %%
auto = Lab(storage="memory", seed=1, clock="auto")
T0 = auto.clock.now()
r = auto.bind("REMINDERS", Reminder).getByName("bob")
auto.faults.fail_next_alarm(r, times=2)
rec = auto.record()
await r.remind_in(0, "retry me")
def alarm_runs():
    alarms = {e.delivery for e in rec.events
              if e.kind == "DeliveryQueued" and e.kind_of_delivery == "alarm"}
    return [e for e in rec.events if e.kind == "DeliveryFinished" and e.delivery in alarms]

for _ in range(100):                       # the auto clock skips ahead to each retry
    await asyncio.sleep(0.01)
    if any(run.ok for run in alarm_runs()):
        break
rec.close()
for run in alarm_runs():
    print(f"t={run.time - T0:5.2f}s  alarm handler "
          + ("succeeded" if run.ok else f"FAILED: {run.error}"))
await auto.close()

# %% [markdown]
# Retries back off: 2 s, then 4 s (plus up to 25 % jitter), up to 6 retries. Delivery is
# **at least once**: a handler can run again after its side effects already happened (a
# message sent, an email mailed). Handlers must be safe to repeat.

# %% tags=["claim"]
claim(
    "Retries back off: 2 s, then 4 s (plus up to 25 % jitter)",
    output=r"t= 0\.00s  alarm handler FAILED[^\n]*\nt= 2\.[0-4]\ds  alarm handler "
           r"FAILED[^\n]*\nt= (6\.\d\d|7\.[0-4]\d)s  alarm handler succeeded",
)

# %% [markdown]
# ## Exercise 05 · a batcher on an alarm
#
# `add(item)` collects items; `BATCH_SECONDS = 10` s after the first item of a batch, `alarm()`
# sends them all in one call to `env.OUTBOX.getByName("outbox").deliver(items, batch_id=...)`
# (a ready-made object that ignores a `batch_id` it has already seen). The check adds items
# in a trickle, evicts the batcher, makes the outbox unreachable once, adds an item in the
# middle of a send, and makes a commit fail right after a send. The starter has four classic
# bugs; the check finds them one by one.

# %% exercise="05"
# Filled in from course/starters/ex05.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [06 · contention and sharding](06_contention_sharding.ipynb).
