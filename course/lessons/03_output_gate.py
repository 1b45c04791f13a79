# %% tags=["claim-kit"]
# The source of notebooks/03_output_gate.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, settled, text_of

# isort: split

# %% [markdown]
# # 03 · The output gate: no false acknowledgments
#
# **Covers:** replies held until the writes before them are committed; a failed commit turns
# the held reply into an error and resets the object; the naive model acknowledging writes it
# then loses; `allowUnconfirmed` and what it trades away.
# **You will be able to:** say when a caller hears "done", inject a storage failure with
# `lab.faults`, and decide when `allowUnconfirmed` is acceptable.
# **Scenario:** a bank account, on memory labs with `seed=1`.

# %%
import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab
from durable_lab.tour import describe


def show(events, *, only=None):
    """Print the events in plain words, one per line (gate bookkeeping left out)."""
    for e in events:
        line = describe(e)
        if line and (only is None or e.object in only):
            print(f"{e.object:<18} {line}")


class Account(DurableObject):
    async def deposit(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        self.ctx.storage.put("balance", balance + amount)
        return balance + amount

    async def deposit_fast(self, amount):
        balance = (await self.ctx.storage.get("balance")) or 0
        self.ctx.storage.put("balance", balance + amount, allowUnconfirmed=True)
        return balance + amount

    async def balance(self):
        return (await self.ctx.storage.get("balance")) or 0

# %% [markdown]
# ## When does the caller hear "done"?
#
# **Predict:** the handler returns right after an un-awaited `put()`. Does the reply reach the
# caller before the commit, or after?

# %%
lab = Lab(storage="memory", seed=1, commit_latency=0.3)   # each commit takes 0.3 s
ACCOUNTS = lab.bind("ACCOUNTS", Account)
acct = ACCOUNTS.getByName("alice")
view = widgets.watch(lab, "ACCOUNTS:alice")   # by label: it follows every instance
view

# %%
rec = lab.record()
print(await acct.deposit(100))
rec.close()
show(rec.events)

# %% [markdown]
# *finished → reply HELD → commit durable → reply released.* The handler was done before the
# commit, but the caller only hears about it once the write is durable. In the panel: the
# reply sat in *Replies held by the output gate* for the 0.3 s the commit took (the purple
# span on the *output gate* lane, over the blue *commit* span), then went out green.
#
# ## Break the storage
#
# **Predict:** we make the next commit fail and deposit 50. What does the caller get, and what
# is the balance afterwards?

# %% tags=["claim"]
claim(
    "*finished → reply HELD → commit durable → reply released.*",
    output=r"finished[\s\S]*reply to call \d+ HELD[\s\S]*commit #\d+ durable[\s\S]*reply to call "
           r"\d+ released",
)

# %% tags=["claim"]
claim("the purple span on the *output gate* lane, over the blue *commit* span")
await settled(lab)
gates = view.timeline.gate_spans.data
spans = {lane: (lo, hi)
         for lane, lo, hi in zip(gates["lane"], gates["left"], gates["right"], strict=True)}
assert "output gate" in spans and "commit" in spans, gates
(hl, hr), (cl, cr) = spans["output gate"], spans["commit"]
assert hl <= cl and hr >= cr, f"output gate {spans['output gate']}, commit {spans['commit']}"
assert "✓ ok" in text_of(view.object_view), text_of(view.object_view)[:300]

# %%
lab.faults.fail_next_commit(acct)
rec = lab.record()
try:
    print("reply:", await acct.deposit(50))
except Exception as exc:
    print(f"the caller got {type(exc).__name__}: {exc}")
    print("durableObjectReset =", exc.durableObjectReset)
rec.close()
show(rec.events)

# %%
try:
    await acct.balance()
except Exception as exc:
    print("the old stub is broken:", exc)
acct = ACCOUNTS.getByName("alice")            # a new stub reaches a fresh instance
print("balance:", await acct.balance())

# %% [markdown]
# No false "done": the held reply became an error (the red **✗ ERROR** chip under
# *Released*, and the red *batch FAILED* in *Storage*), the object reset to what was
# committed (100: the banner says how many writes were lost), and the stub that saw the
# reset is broken for good (make a new one). On the timeline, the failed commit is drawn in red
# on the *commit* lane.
#
# ## The same failure without gates
#
# **Predict:** the same class, the same failure, under `model="none"`.

# %% tags=["claim"]
claim(
    "the red **✗ ERROR** chip under *Released*, and the red *batch FAILED* in *Storage*",
    output="balance: 100",
    page=(".dl-releasedbox",
          "✗ ERROR"),
)
await settled(lab)
shown = text_of(view.object_view)
assert "✗ ERROR" in shown and "FAILED" in shown, shown[:400]

# %% tags=["claim"]
claim(
    "the banner says how many writes were lost",
    page=(".dl-objectview .dl-reset",
          r"\b1 \w+ write\(s\) lost"),
)
await settled(lab)
import re

banner = view.object_view.state.last_reset
assert re.search(r"\b1 \w+ write\(s\) lost", banner), f"the banner says: {banner!r}"
assert banner in text_of(view.object_view), text_of(view.object_view)[:300]

# %% tags=["claim"]
claim("the failed commit is drawn in red on the *commit* lane")
await settled(lab)
gates = view.timeline.gate_spans.data
commits = [f"{k} {d} {label}"
           for lane, k, d, label in zip(gates["lane"], gates["kind"], gates["detail"],
                                        gates["label"], strict=True)
           if lane == "commit"]
assert any("fail" in c.lower() for c in commits), f"commit spans: {commits}"
marks = view.timeline.markers.data
assert False in list(marks["ok"]), marks

# %%
naive = Lab(storage="memory", seed=1, model="none")
n_acct = naive.bind("ACCOUNTS", Account).getByName("alice")
await n_acct.deposit(100)
naive.faults.fail_next_commit(n_acct)
print("reply:", await n_acct.deposit(50))
await naive.wait_idle()
print("balance:", await n_acct.balance())
await naive.close()

# %% [markdown]
# The caller was told 150; storage says 100. That is a **false acknowledgment**, and the
# output gate exists to make it impossible.
#
# ## `allowUnconfirmed=True`: opting out
#
# **Predict:** `deposit_fast` passes `allowUnconfirmed=True`. With the same failure, what does
# the caller hear?

# %% tags=["claim"]
claim("The caller was told 150; storage says 100", output=r"reply: 150\s+balance: 100")

# %%
fast = ACCOUNTS.getByName("bob")
await fast.deposit_fast(100)
await lab.wait_idle()
lab.faults.fail_next_commit(fast)
print("reply:", await fast.deposit_fast(50))
await lab.wait_idle()
print("balance:", await ACCOUNTS.getByName("bob").balance())

# %% [markdown]
# Fast, and wrong when storage fails: the object still resets, but the caller has already been
# told 150. Use it only for writes whose loss nobody acts on (a "last seen" timestamp, a
# cache), never for money, tickets or rate limits.

# %% tags=["claim"]
claim("the caller has already been told 150", output=r"reply: 150\s+balance: 100")

# %% [markdown]
# ## Exercise 03 · no false acknowledgments
#
# `Ledger` was "optimised" with `allowUnconfirmed`. The check fails a commit (and deposits
# again after it), then runs 40 deposits from 3 clients while 1 commit in 5 fails (over 2
# accounts), and asks the history checker whether the balances the clients were told can all
# be true. Fix it.

# %% exercise="03"
# Filled in from course/starters/ex03.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [04 · write coalescing](04_write_coalescing.ipynb): n writes, one commit.
