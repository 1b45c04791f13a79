# %% tags=["claim-kit"]
# The source of notebooks/09_capstone.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, column, settled, text_of

# isort: split

# %% [markdown]
# # 09 · Capstone: design a rate limiter, then prove it
#
# **Covers:** everything: choosing the object (one per user), durable state, the input gate
# around read-check-write, the output gate making every "yes" durable, lab time, bounded
# storage; then proving it with a workload, the history of calls, adversarial schedules and
# injected faults.
# **You will be able to:** design a small Durable Objects system from a spec and show, not
# just claim, that it holds under concurrency and failure.
# **Scenario:** an API that allows each user `LIMIT = 5` calls per sliding `WINDOW = 60`
# seconds, on memory labs with a manual clock (`seed=1`).
#
# ## The spec
#
# - `RATE_LIMITER.getByName(user).allow()` returns `True` if fewer than `LIMIT` calls of that
#   user were allowed in the last `WINDOW` seconds (a *sliding* window), else `False`.
# - A `True` must never be forgotten: not after an eviction, not after a failed commit.
# - No schedule of concurrent calls may allow more than `LIMIT`.
# - Storage stays small however long the limiter runs.
#
# ## Design questions (answer before you code)
#
# 1. Which object owns the state: one per user, one per API key, one for everything? Why?
# 2. What exactly do you store? (Hint: times of allowed calls.) When do you prune it?
# 3. Where is the read-check-write, and what must not happen inside it?
# 4. When may the caller hear `True`? What would `allowUnconfirmed` break?
# 5. Which clock do you read? (`durable_lab.now()` is the lab clock; on Cloudflare you would
#    write `time.time()`.)

# %%
import durable_lab  # noqa: F401 (your limiter reads the lab clock: durable_lab.now())
import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab
from durable_lab.check import History
from durable_lab.tour import describe
from durable_lab.workload import run_workload


def show(events, *, only=None):
    """Print the events in plain words, one per line (gate bookkeeping left out)."""
    for e in events:
        line = describe(e)
        if line and (only is None or e.object in only):
            print(f"{e.object:<18} {line}")

# %% [markdown]
# ## Try a first design by hand
#
# **Predict:** the starter below counts calls in a field. Which requirement does it break
# first?

# %% starter="09"
class RateLimiter(DurableObject):
    LIMIT = 5          # calls ...
    WINDOW = 60        # ... per sliding 60 seconds

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0

    async def allow(self):
        self.calls += 1
        return self.calls <= self.LIMIT


lab = Lab(storage="memory", seed=1, clock="manual")
LIMITER = lab.bind("RATE_LIMITER", RateLimiter)
user = LIMITER.getByName("ada")


async def ask(times):
    """``times`` calls of allow(), one after the other."""
    return [await user.allow() for _ in range(times)]


print(await ask(7))
lab.clock.advance(61)
print("a minute later:", await user.allow())
await lab.evict(user)
print("after an eviction:", await ask(3))

# %% [markdown]
# ## Your limiter
#
# Write `RateLimiter` in the cell below (keep the name, `LIMIT` and `WINDOW`), then run the
# check. It runs seven scenarios: the basics, the sliding window on the lab clock, eviction, a
# burst, 15 adversarial schedules (the check plays scheduler with `lab.pause()` /
# `lab.choose()`), every other commit failing, and 100 calls over 25 minutes for the storage
# bound.

# %% [markdown]
# ## Exercise 09 · the rate limiter
#
# Replace the starter class with your design. Each ✗ comes with what happened and a hint.

# %% exercise="09"
# Filled in from course/starters/ex09.py: its starter, then its check.

# %% [markdown]
# ## Prove it yourself
#
# A passing check is a good sign, not a proof. Run your own experiment: 8 clients hammer 3
# users at once; count, per user, how many calls were allowed. **Predict** the numbers first.

# %%
proof = Lab(storage="memory", seed=1, clock="manual")
ns = proof.bind("RATE_LIMITER", RateLimiter)
board = widgets.dashboard(proof)    # every panel; click a fleet cell to open that user
board

# %%
history = History()
result = await run_workload(ns, method="allow", clients=8, calls=60,
                            names=["ann", "bob", "cat"], seed=1, history=history)
allowed = {}
for call in result.calls:
    if call.ok and call.result is True:
        allowed[call.object] = allowed.get(call.object, 0) + 1
print("allowed per user:", allowed, "| errors:", result.errors)

# %% tags=["claim"]
claim("click a fleet cell to open that user", page=(".dl-fleet", "^3 objects"))
await settled(proof)
labels = column(board.fleet.source, "label")
assert sorted(labels) == ["RATE_LIMITER:ann", "RATE_LIMITER:bob", "RATE_LIMITER:cat"], labels
board.fleet.source.selected.indices = [labels.index("RATE_LIMITER:cat")]   # the click
await settled(proof)
assert board.object_view.target == "RATE_LIMITER:cat", board.object_view.target
assert text_of(board.object_view).startswith("RATE_LIMITER:cat"), text_of(board.object_view)

# %% [markdown]
# ## Going further
#
# - **Faults:** repeat the experiment with `proof.faults.fail_commits(probability=0.3)`. Do the
#   numbers change? Why is "allowed" never above `LIMIT`?
# - **Clean-up:** a user who never comes back leaves data behind. Add an alarm that deletes the
#   object's storage (`deleteAll()`) one `WINDOW` after the last call.
# - **Another capstone:** a collaborative document: one object per document, `edit(version,
#   op)` refuses stale versions, every editor connected over a WebSocket receives each accepted
#   op in order. Prove it with two clients editing at once under `lab.pause()`.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).
