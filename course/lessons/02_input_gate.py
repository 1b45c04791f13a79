# %% tags=["claim-kit"]
# The source of notebooks/02_input_gate.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, column, settled, text_of

# isort: split

# %% [markdown]
# # 02 · The input gate: what it blocks, and what it does not
#
# **Covers:** turns; storage reads keep the gate closed; awaits of timers and of other objects
# open it; you as the scheduler (`lab.pause()`, `lab.choices()`, `lab.choose(i)`);
# `blockConcurrencyWhile` and its cost.
# **You will be able to:** predict where another request can slip into your handler, find a
# schedule that breaks a handler, and fix it by ordering writes or with
# `blockConcurrencyWhile`.
# **Scenario:** counters and a one-seat ticket sale, on memory labs with a manual clock
# (`clock="manual"`): lab time moves only when we say so.

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


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0       # storage read: gate stays closed
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def increment_after_io(self):
        n = (await self.ctx.storage.get("n")) or 0
        await durable_lab.sleep(1)                       # a timer: the gate opens
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def value(self):
        return (await self.ctx.storage.get("n")) or 0

# %% [markdown]
# ## Be the scheduler
#
# `lab.pause()` stops the runtime before every *transition* (a call admitted by the gate, a
# continuation resuming, a flush, a commit, a reply). `lab.choices()` lists the ones the gates
# allow **now**; `await lab.choose(i)` takes one.
#
# **Predict:** two `increment()` calls are queued on a paused lab. After the constructor runs,
# how many calls may the gate admit? And once you admit one, can you squeeze the other in
# between its read and its write?

# %%
lab = Lab(storage="memory", seed=1, clock="manual")
COUNTER = lab.bind("COUNTER", Counter)
stub = COUNTER.getByName("a")

lab.pause()
board = widgets.watch(lab, stub, scheduler=True)
calls = [asyncio.ensure_future(stub.increment()) for _ in range(2)]
await lab.step()                    # the constructor
board

# %% [markdown]
# The panel on the right lists what `lab.choices()` returns: the transitions the gates allow
# **now**, one button each. **Click `1: admit delivery 2 ...`** to admit the second call first
# (or run the next cell, which does the same from code), and watch the object view and the
# timeline: the *input gate* lane turns red while the call runs. Before you click, the object
# view shows both calls waiting in its *Mailbox (2)*, the gate OPEN, the running turn idle.

# %% tags=["claim"]
claim(
    "the object view shows both calls waiting in its *Mailbox (2)*, the gate OPEN",
    page=(".dl-objectview[data-object='COUNTER:a'] .dl-mailbox",
          r"(?:MAILBOX|Mailbox) \(2\)"),
)
await settled(lab)
shown = text_of(board.object_view)
assert "Mailbox (2)" in shown, shown[:300]
state = board.object_view.state
assert state.gate_open and state.running is None, shown[:300]

# %% tags=["claim"]
claim("one button each")
await settled(lab)
labels = [b.description for b in board.scheduler.buttons.children]
assert len(labels) == len(lab.choices()) >= 2, (labels, lab.choices())
assert labels[1].startswith("1: admit delivery 2"), labels

# %%
options = lab.choices()
if len(options) > 1 and options[1].kind == "admit":
    await lab.choose(1)             # what clicking button 1 does: admit the second call
print(lab.choices())

# %% [markdown]
# The second call ran its whole read-then-write in one go: while its read was in flight the
# gate offered **nobody** else. Take the remaining steps in any order you like, by clicking or
# with the next cell; the answer is always `[1, 2]` in some order.

# %% tags=["claim"]
claim(
    "The second call ran its whole read-then-write in one go",
    output=r"^\[\[0\] admit delivery 1 at COUNTER:a, \[1\] start the flush of COUNTER:a",
)
await settled(lab)
tl = board.timeline
labels = column(tl.gate_spans, "label") + column(tl.open_gate_spans, "label")
lanes = column(tl.gate_spans, "lane") + column(tl.open_gate_spans, "lane")
pairs = list(zip(lanes, labels, strict=True))
assert ("input gate", "#2") in pairs, pairs

# %%
while not all(c.done() for c in calls):
    options = lab.choices()
    print("taking", options[-1])
    await lab.choose(len(options) - 1)    # always the newest option: try 0 instead
lab.resume()
print([c.result() for c in calls])

# %% tags=["claim"]
claim("the answer is always `[1, 2]` in some order", output=r"(?m)^\[(1, 2|2, 1)\]$")

# %% [markdown]
# ## Now with a timer between read and write
#
# **Predict:** the same game with `increment_after_io()`, which awaits `durable_lab.sleep(1)`
# between its read and its write. Can you make both calls return 1?

# %%
other = COUNTER.getByName("b")
board.select(other)                       # the panel above follows b now
lab.pause()
calls = [asyncio.ensure_future(other.increment_after_io()) for _ in range(2)]
await lab.step()                          # constructor
await lab.choose(0)                       # call 1 reads 0, then sleeps: the gate opens
print(lab.choices())                      # call 2 may be admitted now (deliveries are
                                          # numbered across the whole lab)
await lab.choose(0)                       # call 2 reads 0 too, then sleeps
lab.clock.advance(1)                      # both timers fire
lab.resume()
print(await asyncio.gather(*calls), "value:", await other.value())

# %% [markdown]
# Both returned 1: a lost update, produced on purpose (on the timeline above: two *awaiting io*
# lanes side by side while the gate lane is empty). The gate holds only while the object
# waits for **its own storage**; a timer, a `fetch`, a call to another object or
# `storage.sync()` all let the next request in.
#
# ## Watch the gate close, in slow motion
#
# At full speed a whole call takes a few microseconds: no screen can show the gate closed.
# `watch(..., speed=3)` puts the lab in slow motion: three transitions a second, and the
# events of each played back one at a time.
#
# **Predict:** three increments arrive at once. While one of them runs, is the gate open or
# closed? Where do the other two wait?

# %% tags=["claim"]
claim(
    "two *awaiting io* lanes side by side while the gate lane is empty",
    output=r"(?m)^\[1, 1\] value: 1$",
)
await settled(lab)
seg = board.timeline.segments.data
io = [(lo, hi) for k, lo, hi in zip(seg["kind"], seg["left"], seg["right"], strict=True)
      if k == "awaiting io"]
assert len(io) == 2 and max(lo for lo, _ in io) < min(hi for _, hi in io), io
both = (max(lo for lo, _ in io), min(hi for _, hi in io))
gates = board.timeline.gate_spans.data
closed = [(lo, hi)
          for lane, lo, hi in zip(gates["lane"], gates["left"], gates["right"], strict=True)
          if lane == "input gate"]
free = [x + 0.5 for x in range(int(both[0]), int(both[1]))
        if not any(lo <= x + 0.5 <= hi for lo, hi in closed)]
assert free, f"the input gate lane is closed all the time both wait {both}: {closed}"

# %%
slow = Lab(storage="memory", seed=1)
slow_counter = slow.bind("COUNTER", Counter).getByName("slow")
slow_view = widgets.watch(slow, slow_counter, speed=3)   # Play/Pause/speed at the top
slow_view

# %%
print(await asyncio.gather(*(slow_counter.increment() for _ in range(3))))
slow_view.full_speed()              # back to full speed

# %% [markdown]
# Each call closed the gate (**CLOSED**, held by its delivery) from admission to its last line,
# storage read included, while the others waited in the mailbox. The red spans on the
# timeline's *input gate* lane stay after the run, one per call: hover them to see who held
# the gate. At full speed the same spans are drawn, just a few events wide.
#
# ## `blockConcurrencyWhile`: close the gate across any await
#
# **Predict:** wrapping read-sleep-write in `blockConcurrencyWhile` fixes the counter. What
# does it cost when 5 calls arrive at once and each sleeps 1 s (lab time)?

# %% tags=["claim"]
claim(
    "The red spans on the timeline's *input gate* lane stay after the run, one per call",
    output=r"\[1, 2, 3\]",
    page=(".dl-objectview .dl-gatebox",
          r"CLOSED\s*held by delivery \d"),
)
await settled(slow)
gates = slow_view.timeline.gate_spans.data
held = [label for lane, label in zip(gates["lane"], gates["label"], strict=True)
        if lane == "input gate"]
calls = sorted(label for label in held if label.startswith("#"))
assert len(calls) == 3 and len(set(calls)) == 3, f"input-gate spans: {held}"
holders = [d for lane, d in zip(gates["lane"], gates["detail"], strict=True)
           if lane == "input gate"]
assert sum(d.startswith("closed by delivery") for d in holders) == 3, holders
assert slow_view.object_view.state.finished == 3, slow_view.object_view.state

# %%
class BlockingCounter(Counter):
    async def increment_after_io(self):
        async def critical():
            n = (await self.ctx.storage.get("n")) or 0
            await durable_lab.sleep(1)
            self.ctx.storage.put("n", n + 1)
            return n + 1
        return await self.ctx.blockConcurrencyWhile(critical)


for cls in (Counter, BlockingCounter):
    timed = Lab(storage="memory", seed=1, clock="auto")     # auto: jumps to the next timer
    s = timed.bind("C", cls).getByName("x")
    start = timed.clock.now()
    results = await asyncio.gather(*(s.increment_after_io() for _ in range(5)))
    print(f"{cls.__name__:>15}: {sorted(results)}, value {await s.value()}, "
          f"took {timed.clock.now() - start:.0f} s of lab time")
    await timed.close()

# %% [markdown]
# Correct, but five times slower: nothing else enters the object while the critical section
# waits. Usually the better fix is to **order your code**: do the read and the write in one
# turn (no non-storage await in between), and the slow I/O before or after.
#
# ## A real case: selling the last seat
#
# `Payments` is a ready-made object standing for a payment API; `charge()` takes 50 ms of lab
# time. **Predict:** ann and bob claim seat A1 at the same moment with the class below. Who
# gets it, and who pays?

# %% tags=["claim"]
claim(
    "Correct, but five times slower",
    output=r"Counter: \[1, 1, 1, 1, 1\], value 1, took 1 s[\s\S]*BlockingCounter: \[1, 2, 3, 4, "
           r"5\], value 5, took 5 s",
)

# %%
from durable_lab.exercises import Payments


class NaiveSeat(DurableObject):
    async def claim(self, user):
        if await self.ctx.storage.get("owner") is not None:
            return False
        await self.env.PAYMENTS.getByName("bank").charge(user, 10)
        self.ctx.storage.put("owner", user)
        return True

shop = Lab(storage="memory", seed=1, clock="auto")
shop.bind("PAYMENTS", Payments)
seat = shop.bind("SEATS", NaiveSeat).getByName("A1")
print(await asyncio.gather(seat.claim("ann"), seat.claim("bob")))
print("charged:", await shop.env.PAYMENTS.getByName("bank").charges())
await shop.close()

# %% [markdown]
# ## Let the machine be the scheduler
#
# Clicking through schedules finds a lost update if you pick the right ones. `explore()`
# picks **every** one: it runs a small workload once per legal schedule, each in a fresh
# paused lab, takes the transitions in every order the gates allow (the clock too: "let lab
# time pass to the next timer" is a choice at every step), and checks each history with the
# linearizability checker. Schedules that differ only in the order of steps that cannot affect
# each other (steps of *different* objects; a reply handed to its caller and a commit of the
# same object) are run once (docs/explore.md says what that assumes).
#
# **Predict:** two `increment_after_io()` calls on one object. How many schedules are there,
# and how many of them lose an update?

# %%
from durable_lab import explore
from durable_lab.check import CounterModel

after_io = CounterModel(increment="increment_after_io")   # what the checker calls an increment


def two_calls(env):
    return [env.COUNTER.getByName("x").increment_after_io() for _ in range(2)]


result = await explore({"COUNTER": Counter}, two_calls, spec=after_io)
print(result)

# %% [markdown]
# Every schedule was run (`complete`), and dozens of them return `[1, 1]`. The shortest is
# kept as `result.counterexample`; `explain()` says what each of its steps made happen:

# %% tags=["claim"]
claim(
    "Every schedule was run (`complete`), and dozens of them return `[1, 1]`",
    output=r"(?m)[\d,]+ schedules explored \(dpor[\s\S]*^\d\d+ of [\d,]+ schedules break it",
)
assert result.complete and not result.ok, result
assert result.counterexample.outcomes == [1, 1], result.counterexample

# %%
print(result.counterexample.explain())

# %% [markdown]
# Step 2 admits call 1, which reads and then **awaits io: gate OPENS** (its timer); step 3
# admits call 2 in that gap, and it reads the same `n`. Now play that schedule in the panels,
# one step per click: the button **play counterexample: next step** takes the next step, and
# the timeline draws its gate spans as it goes.

# %% tags=["claim"]
claim(
    "Step 2 admits call 1, which reads and then **awaits io: gate OPENS**",
    output=r"(?m)^  2\. admit delivery 1 at COUNTER:x\n(?:.*\n)*?.*call 1 awaits io: gate OPENS\n"
           r"  3\. admit delivery 2 at COUNTER:x",
)

# %%
player = await result.counterexample.player()      # a fresh lab, paused before step 1
replay = widgets.watch(player.lab, scheduler=True)
replay.scheduler.play(player)
replay

# %%
await replay.scheduler.play_all()    # or click "play counterexample: next step" above
print("the calls returned", player.outcomes)

# %% [markdown]
# The panel says **all 10 steps played** and the timeline shows the two *awaiting io* lanes
# side by side, as in your hand-made schedule above. **Predict:** does
# `BlockingCounter` (the critical section) hold on every schedule?

# %% tags=["claim"]
claim(
    "The panel says **all 10 steps played**",
    output=r"(?m)^the calls returned \[1, 1\]$",
    page=(".dl-counterexample", r"all \d+ steps played"),
)
await settled(player.lab)
status = replay.scheduler.status.value
assert f"all {len(player.keys)} steps played" in status, status
assert len(player.keys) == 10, player.keys
seg = replay.timeline.segments.data
waiting = [k for k in seg["kind"] if k == "awaiting io"]
assert len(waiting) >= 2, list(seg["kind"])

# %%
fixed = await explore({"COUNTER": BlockingCounter}, two_calls, spec=after_io)
print(fixed)

# %% [markdown]
# Yes: **no schedule breaks it**, and that is a proof for this workload, which no number of
# random runs gives. One last comparison: the same exploration without gates
# (`model="none"`, plain asyncio) has almost nothing left to choose, and every schedule
# loses the update.

# %% tags=["claim"]
claim("no schedule breaks it", output=r"all [\d,]+ schedules hold: no schedule breaks it")
assert fixed.ok and fixed.complete, fixed

# %%
naive = await explore({"COUNTER": Counter}, two_calls, spec=after_io, model="none")
print(naive)
print("outcomes with gates:", sorted(result.outcomes), "without:", sorted(naive.outcomes))

# %% tags=["claim"]
claim("every schedule loses the update",
      output=r"(\d+) of \1 schedules break it[\s\S]*without: \[\(1, 1\)\]")
assert naive.complete and naive.outcomes == {(1, 1)}, naive

# %% [markdown]
# ## Exercise 02 · one seat, one payment
#
# Fix `Seat` so that the seat is sold once and only the winner pays, whatever the schedule.
# The check also plays scheduler: it explores every schedule of 2 claims (`explore`, as
# above) and 25 random legal schedules of 3 claims; it evicts the object
# after a sale, and makes the payment call fail once: a failed payment must leave the seat
# free for the next buyer.

# %% exercise="02"
# Filled in from course/starters/ex02.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [03 · the output gate](03_output_gate.ipynb): no false acknowledgments.
