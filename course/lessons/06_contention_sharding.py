# %% tags=["claim-kit"]
# The source of notebooks/06_contention_sharding.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, column, panel_of, settled, text_of

# isort: split

# %% [markdown]
# # 06 · Contention and sharding
#
# **Covers:** one object is one queue; a hot object against a sharded design
# (`durable_lab.workload.run_workload` with `distribution="hot"`); long requests
# (`blockConcurrencyWhile` around slow I/O) blocking everything behind them; choosing the
# shard key (the unit of consistency).
# **You will be able to:** measure throughput and latency of a workload, spot a hot object,
# and shard by room/user without losing consistency.
# **Scenario:** counters with slow commits (`commit_latency=0.002`, real clock) driven by 8
# clients (`seed=1`), and a profile exporter on a manual clock.

# %%
import asyncio

import durable_lab
import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab
from durable_lab.workload import run_workload


class Counter(DurableObject):
    async def increment(self, by=1):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + by)
        return n + by

# %% [markdown]
# ## One hot object
#
# Each commit takes 2 ms. One object commits one batch at a time, so everything sent to it
# queues behind its commits. **Predict:** 8 clients make 400 increments, (a) almost all to one
# object (`distribution="hot"`), (b) spread evenly over 8 objects. Which has the higher
# throughput? The lower p99 latency?

# %%
hot = Lab(storage="memory", seed=1, commit_latency=0.002)
hot_counters = hot.bind("COUNTER", Counter)
widgets.side_by_side(widgets.fleet(hot), widgets.metrics(hot))

# %%
result = await run_workload(hot_counters, method="increment", clients=8, calls=400,
                            objects=8, distribution="hot", skew=0.9, seed=1)
print(result.summary())

# %% [markdown]
# **Where did the hot object's time go?** Every call's latency is split into phases that add
# up to it (docs/attribution.md): waiting for admission at the input gate (`queued`), running,
# storage reads with the gate held, other I/O, re-entry, held by the output gate, network.
# `result.phases(object=...)` gives each phase's percentiles; `hot.explain(call)` explains
# one call in a line. Each bar below is one of the slowest calls, split by phase; click one.

# %%
for phase, p in result.phases(object=result.hot_object).items():
    if p["p95"]:
        print(f"{phase:<12} p50 {p['p50'] * 1000:6.2f} ms   p95 {p['p95'] * 1000:6.2f} ms")
print(hot.explain(result.slowest(1)[0]))
widgets.where_time_went(hot, result=result, slowest=15)

# %% [markdown]
# On the hot object most of a call's time is `output_gate`: its code runs in a fraction of a
# millisecond, then its reply waits for the commit of its batch, and one object's commits go
# one at a time (2 ms each here). Coalescing keeps that wait short (many increments share one
# commit); a second object would commit in parallel.

# %% tags=["claim"]
claim("On the hot object most of a call's time is `output_gate`")
phases = result.phases(object=result.hot_object)
biggest = max(phases, key=lambda phase: phases[phase]["p50"])
assert biggest == "output_gate", {k: round(v["p50"] * 1000, 3) for k, v in phases.items()}

# %% [markdown]
# The fleet is a heat map of queues: one dark cell (the hot object, its queue long) among
# pale ones; the queue-depth plot shows that one queue, and the percentiles above the plots
# how long its calls waited. Now the same 400 calls spread evenly over 8 objects:

# %% tags=["claim"]
claim(
    "one dark cell (the hot object, its queue long) among pale ones",
    page=(".dl-fleet",
          r"^8 objects · 0 calls queued · hottest: COUNTER:\S+ \(0 queued now, [6-9] at most"),
)
await settled(hot)
fleet = panel_of(hot, "fleet")
peaks = dict(zip(column(fleet.source, "label"), column(fleet.source, "peak"), strict=True))
hottest = max(peaks, key=peaks.get)
assert hottest == f"COUNTER:{result.hot_object}" and len(peaks) == 8, (result.hot_object, peaks)
assert peaks[hottest] >= 6 and all(3 * p < peaks[hottest] for k, p in peaks.items()
                                    if k != hottest), peaks

# %% tags=["claim"]
claim("the queue-depth plot shows that one queue")
await settled(hot)
metrics = panel_of(hot, "metrics")
fleet = panel_of(hot, "fleet")
peak = max(column(fleet.source, "peak"))
drawn = max(column(metrics.rates, "max_queue"), default=0)
assert drawn >= peak / 2, f"the queue-depth plot reaches {drawn}; the hot queue reached {peak}"

# %% tags=["claim"]
claim("the percentiles above the plots how long its calls waited")
await settled(hot)
shown = text_of(panel_of(hot, "metrics").percentiles)
assert "latency of 400 recent calls" in shown, shown

# %%
even = Lab(storage="memory", seed=1, commit_latency=0.002)
even_counters = even.bind("COUNTER", Counter)
widgets.side_by_side(widgets.fleet(even), widgets.metrics(even))

# %%
result = await run_workload(even_counters, method="increment", clients=8, calls=400,
                            objects=8, distribution="uniform", seed=1)
print(result.summary())

# %% [markdown]
# (Numbers are wall-clock and vary by machine; the shape does not.) Coalescing helps the hot
# object (many increments share one commit), but all of them still wait in one queue. Cloudflare
# puts a soft limit of about 1,000 requests per second on one object; past its queue limit an
# object answers `overloaded`.
#
# ## One long request blocks everyone
#
# **Predict:** a report takes 5 s of lab time (an external call) inside
# `blockConcurrencyWhile`. A quick `ping()` arrives 1 s later. When does it answer?

# %%
class Report(DurableObject):
    async def slow_report(self, locked):
        async def work():
            await durable_lab.sleep(5)           # an external call
            return "report"
        if locked:
            return await self.ctx.blockConcurrencyWhile(work)
        return await work()

    async def ping(self):
        return "pong"


for locked in (True, False):
    lab = Lab(storage="memory", seed=1, clock="manual")
    stub = lab.bind("REPORT", Report).getByName("r")
    start = lab.clock.now()
    report = asyncio.ensure_future(stub.slow_report(locked))
    await lab.scheduler.settle()
    lab.clock.advance(1)
    ping = asyncio.ensure_future(stub.ping())
    await lab.scheduler.settle()
    answered = "at once (t=1 s)" if ping.done() else "not yet"
    lab.clock.advance(4)
    await asyncio.gather(report, ping)
    print(f"blockConcurrencyWhile={locked}: ping answered {answered}")
    await lab.close()

# %% [markdown]
# See it on the timeline: the same locked report, with the ping arriving 1 s later.

# %%
lab = Lab(storage="memory", seed=1, clock="manual")
stub = lab.bind("REPORT", Report).getByName("r")
report_view = widgets.watch(lab, stub)
report_view

# %%
report = asyncio.ensure_future(stub.slow_report(True))
await lab.scheduler.settle()
lab.clock.advance(1)
ping = asyncio.ensure_future(stub.ping())
await lab.scheduler.settle()
lab.clock.advance(4)
print(await asyncio.gather(report, ping))

# %% [markdown]
# The critical section kept the gate closed for 5 s (one long red span on the *input gate*
# lane, held by the `critical section`), and the ping's lane is grey, queued, all along: one
# slow request stalled the whole object. Hold the gate only around what must not interleave (a
# storage read and write), and do slow I/O outside it.

# %% tags=["claim"]
claim(
    "one long red span on the *input gate* lane, held by the `critical section`), and the ping's l"
    "ane is grey, queued, all along",
)
await settled(lab)
tl = report_view.timeline
gates = tl.gate_spans.data
critical = [(lo, hi, d) for lane, lo, hi, d in zip(gates["lane"], gates["left"], gates["right"],
                                               gates["detail"], strict=True)
            if lane == "input gate" and "critical section" in d]
assert len(critical) == 1, dict(gates)
left, right, _ = critical[0]
seg = tl.segments.data
rows = list(zip(seg["delivery"], seg["method"], seg["kind"], seg["left"], seg["right"],
                strict=True))
ping = [r for r in rows if r[1] == "ping"]
queued = [r for r in ping if r[2] == "queued"]
assert queued and queued[0][3] < right and queued[0][4] >= right, (ping, critical)
report = [r for r in rows if r[1] == "slow_report" and left < r[4] and r[3] < right]
assert not [r for r in report if r[2] == "awaiting io"], (
    f"drawn as gate-open 'awaiting io' inside the critical section: {report}")

# %% [markdown]
# ## Exercise 06a · no head-of-line blocking
#
# `Profile.export()` uploads a snapshot to a slow exporter (5 s of lab time,
# `env.EXPORTER.getByName("x").upload(snapshot)`). The starter plays it safe with
# `blockConcurrencyWhile`, and every update waits. Make updates and reads go on while an export
# is in flight, and keep the snapshot consistent.

# %% exercise="06a"
# Filled in from course/starters/ex06a.py: its starter, then its check.

# %% [markdown]
# ## Sharding: by what?
#
# A chat service: **Predict:** route every message to one object `"global"`, or one object per
# user, or one object per room: which design keeps each room's history consistent and still
# spreads the load?

# %% [markdown]
# ## Exercise 06b · shard by the unit of consistency
#
# Write `route(env, room, user)`, returning the stub a message for `room` from `user` goes to
# (`env.ROOMS` is a ready-made room object with `post(user, text)` and `messages()`). The check
# posts to many rooms from many users and reads the rooms back.

# %% exercise="06b"
# Filled in from course/starters/ex06b.py: its starter, then its check.

# %% [markdown]
# **Next:** [07 · the SQL API](07_sql_api.ipynb).
