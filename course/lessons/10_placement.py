# %% tags=["claim-kit"]
# The source of notebooks/10_placement.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, column, panel_of, settled, text_of

# isort: split

# %% [markdown]
# # 10 · Placement: where objects live
#
# *Read after [06 · contention and sharding](06_contention_sharding.ipynb).*
#
# **Covers:** where an object lives (near the caller that creates it, for good), what distance
# costs every call (a round trip per call, on the lab clock), `locationHint` on `get()` and
# `getByName()`, `lab.client(region)`, jurisdictions (`ns.jurisdiction("eu")`), latency
# percentiles per region (`run_workload(regions=..., timing="lab")`).
# **You will be able to:** predict the latency each region sees from where an object lives,
# and choose the shard key and location hints that keep every region within a budget.
# **Scenario:** a chat service used from five continents, on
# `Lab(network="cloudflare-regions", clock="auto")`: calls pay approximate real round-trip
# times between Cloudflare's regions, in lab time, so every number below is the same on every
# machine and the notebook runs in seconds.

# %%
import asyncio

import widgets  # the live panels: docs/panels.md
from durable_lab import DurableObject, Lab
from durable_lab.workload import run_workload


class Room(DurableObject):
    async def post(self, user, text):
        count = (await self.ctx.storage.get("count")) or 0
        self.ctx.storage.put(f"msg:{count:06}", f"{user}: {text}")
        self.ctx.storage.put("count", count + 1)
        return count + 1

    async def messages(self):
        return list((await self.ctx.storage.list(prefix="msg:")).values())


FIVE = ["wnam", "weur", "apac-ne", "sam", "oc"]     # five continents (Cloudflare's region names)

# %% [markdown]
# ## Regions and round trips
#
# Cloudflare names regions by their location hints: `wnam` (Western North America), `weur`
# (Western Europe), `apac-ne` (Northeast Asia), `sam` (South America), `oc` (Oceania), and six
# more. The lab's network is a table of approximate round-trip times between them (one city
# stands for each region; docs/semantics.md says where the figures come from). A call pays
# half the round trip on the way in and half on the way back.

# %%
lab = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
ROOMS = lab.bind("ROOMS", Room)
print("round trips in ms:")
print(lab.network.table(FIVE))

# %% [markdown]
# ## One call, two trips
#
# `lab.client(region)` is a Worker running in that region: its `env.ROOMS` makes stubs that
# call from there. An object is created at its first call, **near the caller that made it**,
# and it stays there.
#
# **Predict:** a member in Tokyo (`apac-ne`) creates the room `tokyo` with a post, then a member
# in Amsterdam (`weur`) posts to it. How long does each post take, in lab milliseconds?

# %%
room_view = widgets.watch(lab, lab.env.ROOMS.getByName("tokyo"), x="time")
room_view

# %%
for region in ("apac-ne", "weur"):
    stub = lab.client(region).env.ROOMS.getByName("tokyo")
    start = lab.clock.now()
    await stub.post(f"someone in {region}", "hello")
    took = (lab.clock.now() - start) * 1000
    print(f"from {region:<8} {took:5.0f} ms   (the room lives in {lab.network.region_of(stub)})")

# %% [markdown]
# Tokyo's post took one local round trip (10 ms); Amsterdam's took the Amsterdam-Tokyo round
# trip (230 ms), although the object did the same work. On the timeline the teal *network*
# spans are the trips: one before *queued* (the request on its way in), one after the reply
# left the output gate (the answer on its way back). The object's own work is the same sliver
# in both lanes.
#
# ## One global chat object, used from five continents
#
# **Predict:** one object `"global"` for the whole service, created by a member in `wnam`.
# Ten clients in five regions post to it. Which regions see a p50 under 50 ms?

# %% tags=["claim"]
claim(
    "Tokyo's post took one local round trip (10 ms); Amsterdam's took the Amsterdam-Tokyo round tr"
    "ip (230 ms)",
    output=r"from apac-ne\s+10 ms[\s\S]*from weur\s+230 ms",
)

# %% tags=["claim"]
claim(
    "the teal *network* spans are the trips: one before *queued* (the request on its way in), one "
    "after the reply left the output gate",
)
await settled(lab)
seg = room_view.timeline.segments.data
lanes = {}
for d, left, right, kind in sorted(zip(seg["delivery"], seg["left"], seg["right"],
                                       seg["kind"], strict=True)):
    lanes.setdefault(d, []).append((left, right, kind))
kinds = [[k for _, _, k in sorted(spans)] for spans in lanes.values()]
trips = [k for k in kinds if "network" in k]
assert len(trips) == 2, kinds
for k in trips:
    assert k[0] == "network" and k[1] == "queued" and k[-1] == "network", kinds

# %% tags=["claim"]
claim("The object's own work is the same sliver in both lanes")
await settled(lab)
tl = room_view.timeline
seg = tl.segments.data
x_left, x_right = getattr(tl, "x_columns", ("left", "right"))     # the x axis drawn
width = {}
for left, right, kind in zip(seg[x_left], seg[x_right], seg["kind"], strict=True):
    width.setdefault(kind, []).append(float(right) - float(left))
trips, work = max(width.get("network", [0])), max(width.get("running", [0]))
assert trips >= 20 * work, (
    f"the longest trip (115 ms one way) is drawn {trips:.1f} wide, the object's work "
    f"{work:.1f}: the timeline is not drawn against lab time")

# %%
world = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
world_rooms = world.bind("ROOMS", Room)
widgets.side_by_side(widgets.fleet(world), widgets.metrics(world))

# %%
await world.client("wnam").env.ROOMS.getByName("global").post("founder", "first!")
result = await run_workload(world_rooms, method="post", args=("member", "hi"), clients=10,
                            per_client=20, names=["global"], regions=FIVE, timing="lab")
print(result.summary())

# %% [markdown]
# One region is fast, four are not: the object lives in `wnam` (its fleet cell says so) and
# everyone else crosses an ocean twice per post. No amount of speed inside the object helps;
# only *where it lives* does.
#
# ## One object per room, near its members
#
# Most of a room's members live in one region. **Predict:** one object per room, each created
# by one of its own members: what p50 and p95 does each region see now?

# %% tags=["claim"]
claim(
    "One region is fast, four are not: the object lives in `wnam` (its fleet cell says so)",
    output=r"wnam\s+40 ok\s+p50\s+10\.00 ms[\s\S]*weur\s+40 ok\s+p50\s+145\.00 ms",
    page=(".dl-percentiles",
          r"p50 1[0-9][0-9]\.[0-9]"),
)
await settled(world)
fleet = panel_of(world, "fleet")
cells = dict(zip(column(fleet.source, "label"), column(fleet.source, "text"), strict=True))
assert list(cells) == ["ROOMS:global"] and "wnam" in cells["ROOMS:global"], cells
import re

shown = text_of(panel_of(world, "metrics").percentiles)
p50 = float(re.search(r"p50 ([0-9.]+)", shown).group(1))
assert 100 <= p50 <= 175, f"the panel says {shown!r}; the calls took 10-175 ms of lab time"

# %%
HOMES = {"wnam": "wnam/startups", "weur": "weur/techno", "apac-ne": "apac-ne/anime",
         "sam": "sam/futebol", "oc": "oc/surf"}
sharded = Lab(storage="memory", seed=1, clock="auto", network="cloudflare-regions")
sharded_rooms = sharded.bind("ROOMS", Room)
widgets.side_by_side(widgets.fleet(sharded), widgets.metrics(sharded))

# %%
results = await asyncio.gather(*(
    run_workload(sharded_rooms, method="post", args=("member", "hi"), clients=2,
                 per_client=20, names=[room], regions=[region], timing="lab")
    for region, room in HOMES.items()))
for result in results:
    for region, row in result.per_region().items():
        print(f"{region:<8} -> {result.names[0]:<14} p50 {row['p50'] * 1000:4.0f} ms   "
              f"p95 {row['p95'] * 1000:4.0f} ms")
print(sharded.network.placements())

# %% [markdown]
# Every region now sees one local round trip. The fleet groups its cells by region: one room
# per continent, each next to its members. The shard key (the room, the unit of consistency,
# lesson 06) also decides *where* state can live: one object can only be near one place.
#
# ## The first call decides, for good
#
# **Predict:** a cricket fan from Sydney, travelling in London, opens the room `oc/cricket`
# (its first post comes from `weur`). Back home, Sydney members post with
# `locationHint="oc"`. Where does the room live, and what does a Sydney post cost?

# %% tags=["claim"]
claim(
    "Every region now sees one local round trip. The fleet groups its cells by region: one room pe"
    "r continent",
    output=r"(?m)^(\S+\s+-> \S+\s+p50   10 ms   p95   10 ms\n){5}",
)
import re

await settled(sharded)
fleet = panel_of(sharded, "fleet")
regions = dict(zip(column(fleet.source, "label"), column(fleet.source, "region"), strict=True))
assert regions == {f"ROOMS:{room}": region for region, room in HOMES.items()}, regions
assert "in 5 region(s), grouped by region" in text_of(fleet), text_of(fleet)
shown = text_of(panel_of(sharded, "metrics").percentiles)
p50, p95 = (float(re.search(rf"{p} ([0-9.]+)", shown).group(1)) for p in ("p50", "p95"))
assert 9 <= p50 <= p95 <= 11, f"the metrics panel says {shown!r}; every call took 10 ms"

# %%
await sharded.client("weur").env.ROOMS.getByName("oc/cricket").post("visitor", "g'day")
sydney = sharded.client("oc").env.ROOMS.getByName("oc/cricket", locationHint="oc")
start = sharded.clock.now()
await sydney.post("local", "hi")
print(f"{(sharded.clock.now() - start) * 1000:.0f} ms from Sydney; the room lives in "
      f"{sharded.network.region_of(sydney)}")

# %% [markdown]
# The hint came too late: "Only the first call to `get()` for a particular Object will
# respect the hint" (Cloudflare's docs). An object never moves, so pass the hint on *every*
# call: it costs nothing after the first, and then whoever creates the room, it is created at
# home. Python Workers take it as an options dict too: `getByName(room, {"locationHint": "oc"})`.
#
# **Jurisdictions** are stronger than hints: `env.ROOMS.jurisdiction("eu")` is a sub-namespace
# whose objects run and store data only in the EU (`weur` or `eeur` in the lab). Its ids differ
# from the plain namespace's for the same name, and it refuses ids from elsewhere:

# %% tags=["claim"]
claim("The hint came too late", output=r"^\d+ ms from Sydney; the room lives in weur$")

# %%
eu_rooms = sharded.client("apac-ne").env.ROOMS.jurisdiction("eu")
print(eu_rooms.idFromName("gdpr") == sharded.env.ROOMS.idFromName("gdpr"))   # another id
await eu_rooms.getByName("gdpr", locationHint="apac-ne").post("auditor", "hello from Tokyo")
print("placed in", sharded.network.region_of(eu_rooms.getByName("gdpr")))   # never outside the EU
try:
    eu_rooms.get(sharded.env.ROOMS.idFromName("gdpr"))
except TypeError as error:
    print("TypeError:", error)

# %% tags=["claim"]
claim(
    "whose objects run and store data only in the EU (`weur` or `eeur` in the lab)",
    output=r"^False\nplaced in (weur|eeur)\nTypeError: ",
)

# %% [markdown]
# ## Exercise 10 · a latency budget per region
#
# Write `route(env, room, user)`, returning the stub a message for `room` goes to. `env` is the
# bindings seen from the user's region (the check calls it with `lab.client(region).env`), and
# `env.ROOMS` is a ready-made room (`post(user, text)`, `messages()`). Rooms are named
# `"<home region>/<topic>"` (`"oc/surf"`, `"weur/techno"`), and most members of a room live in
# its home region. The check posts 5 messages per room from its members and wants every
# region's p95 within **50 ms** of lab time; then it does it again with each room created by a
# traveller far from home. Choose the shard key and the location hints.

# %% exercise="10"
# Filled in from course/starters/ex10.py: its starter, then its check.

# %%
for each in (lab, world, sharded):
    await each.close()

# %% [markdown]
# **Next:** [07 · the SQL API](07_sql_api.ipynb).
