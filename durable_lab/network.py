"""Placement and the network: where objects live, and what distance costs a call.

On Cloudflare a Durable Object lives in one data centre. Its id says nothing about where: the
object is created, the first time it is used, near the Worker that first reached it, and it
stays there. ``getByName(name, {"locationHint": "weur"})`` asks for another region instead
(best effort, and "only the first call to get() for a particular Object will respect the
hint"); ``env.NS.jurisdiction("eu")`` goes further and *restricts* the objects of a
sub-namespace to a jurisdiction (their ids differ from the plain namespace's). Every call to
an object then crosses the distance between the caller and the object twice: the request goes
out, the answer comes back. A chat room used from five continents answers its nearby members
in a few milliseconds and the others in a few hundred; one object per room, placed near its
members, answers nearly everyone quickly.

The lab models just that, and only when asked: ``Lab(network="cloudflare-regions")`` (or a
table of your own). ``Lab(network=None)``, the default, has no geography at all: no delays,
no placement, nothing on the hot path but one ``if``.

- **Regions** are Cloudflare's location hints (:data:`LOCATION_HINTS`), each stood for by one
  representative city (:data:`REGION_CITIES`).
- **Callers have a region.** ``lab.client("apac-ne")`` is a Worker in that region: its
  ``env.NS`` makes stubs that call from there. Stubs taken from ``lab.env`` or from the
  namespace ``lab.bind`` returns call from :attr:`Network.default_region`. An object calling
  another object calls from the region it was placed in.
- **Placement** happens at an object's first call (when Cloudflare would create it): the
  stub's location hint if it has one, else the caller's region. A jurisdiction narrows the
  choice to its regions (:data:`JURISDICTION_REGIONS`): a hint outside it is ignored and the
  region of the jurisdiction nearest the caller is taken. Placement never changes afterwards
  (an :class:`~durable_lab.events.ObjectPlaced` event says where and why).
- **Delays.** A call pays half the round-trip time (:meth:`Network.rtt`) on the way in, before
  it is queued at the object's input gate, and half on the way back, after the output gate
  released the reply: on the lab clock, so a manual clock (``lab.clock.advance``), an auto
  clock (jumps) and the real clock all work. Calls from an object to another pay the same,
  after the caller's own output gate let the call leave. Each leg is a pair of
  :class:`~durable_lab.events.NetworkHopStarted` / ``NetworkHopEnded`` events.
- Calls on one stub still arrive in the order they were made (E-order), whatever the delays.

The round-trip table (:data:`CLOUDFLARE_REGIONS_RTT_MS`) holds approximate public figures for
the representative cities, rounded to 5 ms: WonderNetwork's city-to-city ping tables
(wondernetwork.com/pings; the method is described in WonderProxy's "Miles per Millisecond"),
the same data Cal Paterson's "Where's the fastest place to put my server?" (2021) uses, and
cloud providers' published inter-region latency matrices. They are good to a few tens of
percent, which is all a lesson needs: what matters is that a hop across an ocean costs tens
to hundreds of times a hop within a region. ``Lab(network={...})`` overrides any of them.

Deliberate simplifications (docs/semantics.md lists them too): no jitter, loss or bandwidth
(every hop between two regions takes the same time); the region of an object created before a
kernel restart is not stored, so it is placed again by its next first call; alarms, WebSocket
messages from clients and the storage an object reads pay no network delay (storage lives with
the object, as on Cloudflare); Cloudflare may ignore a hint, the lab always honours it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._futures import relay_outcome
from .attribution import NETWORK
from .events import NetworkHopEnded, NetworkHopStarted, ObjectPlaced

if TYPE_CHECKING:
    from .services import LabServices

# Handed down from the rooms above, named for the reader, not imported:
# ``_host.ObjectHost``, ``namespace.DurableObjectStub``.
ObjectHost = Any
DurableObjectStub = Any

__all__ = [
    "CLOUDFLARE_REGIONS_RTT_MS",
    "JURISDICTIONS",
    "JURISDICTION_REGIONS",
    "LOCATION_HINTS",
    "MAX_RTT_MS",
    "NETWORKS",
    "REGION_CITIES",
    "REGION_NAMES",
    "SAME_REGION_RTT_MS",
    "Network",
    "check_jurisdiction",
    "check_location_hint",
    "make_network",
]

#: Cloudflare's location hints, in the order its docs list them.
LOCATION_HINTS = ("wnam", "enam", "sam", "weur", "eeur", "apac", "apac-ne", "apac-se", "oc",
                  "afr", "me")

#: What each hint means (Cloudflare's names for them).
REGION_NAMES = {
    "wnam": "Western North America", "enam": "Eastern North America", "sam": "South America",
    "weur": "Western Europe", "eeur": "Eastern Europe", "apac": "Asia-Pacific",
    "apac-ne": "Northeast Asia", "apac-se": "Southeast Asia", "oc": "Oceania", "afr": "Africa",
    "me": "Middle East",
}

#: The city that stands for each region in the round-trip table.
REGION_CITIES = {
    "wnam": "San Jose", "enam": "Ashburn", "sam": "São Paulo", "weur": "Amsterdam",
    "eeur": "Warsaw", "apac": "Hong Kong", "apac-ne": "Tokyo", "apac-se": "Singapore",
    "oc": "Sydney", "afr": "Johannesburg", "me": "Dubai",
}

#: Jurisdictions ``ns.jurisdiction(j)`` accepts (Cloudflare's list), and the regions an object
#: restricted to each may be placed in.
JURISDICTION_REGIONS = {
    "eu": ("weur", "eeur"),
    "fedramp": ("wnam", "enam"),
    "fedramp-high": ("wnam", "enam"),
    "us": ("wnam", "enam"),
}
JURISDICTIONS = tuple(JURISDICTION_REGIONS)

#: Round trip between a caller and an object in the same region (regions are large: a caller
#: in Seattle and an object in San Jose are both "wnam").
SAME_REGION_RTT_MS = 10.0

# Approximate round-trip times in milliseconds between the representative cities (see the
# module docstring for the sources). One entry per unordered pair; the table is symmetric.
_RTT_ROWS = """
           wnam enam sam weur eeur apac apac-ne apac-se oc  afr me
wnam          .   65 175  145  165  155     105     170 145 285 245
enam          .    . 115   80  105  200     150     225 200 230 190
sam           .    .   .  190  210  310     255     325 310 340 290
weur          .    .   .    .   25  190     230     160 260 160 115
eeur          .    .   .    .    .  200     240     175 280 180 120
apac          .    .   .    .    .    .      50      35 120 330 110
apac-ne       .    .   .    .    .    .       .      70 110 350 160
apac-se       .    .   .    .    .    .       .       .  95 280  85
oc            .    .   .    .    .    .       .       .   . 400 185
afr           .    .   .    .    .    .       .       .   .   . 220
"""


def _parse_rows(text: str) -> dict[tuple[str, str], float]:
    lines = [line.split() for line in text.strip().splitlines()]
    header = lines[0]
    table: dict[tuple[str, str], float] = {}
    for row in lines[1:]:
        source, cells = row[0], row[1:]
        for target, cell in zip(header, cells, strict=True):
            if cell != ".":
                table[(source, target)] = float(cell)
    return table


#: The default table (``Lab(network="cloudflare-regions")``): round-trip ms per region pair.
CLOUDFLARE_REGIONS_RTT_MS: dict[tuple[str, str], float] = _parse_rows(_RTT_ROWS)

#: The longest round trip a table may hold, in milliseconds (a minute; the longest on Earth
#: is well under a second). NaN, infinity or 1e300 would leave calls waiting forever.
MAX_RTT_MS = 60_000.0

#: Names ``Lab(network=...)`` accepts.
NETWORKS = ("cloudflare-regions",)


def check_location_hint(hint: object) -> str:
    """``hint`` if it is one of Cloudflare's location hints; a clear ``TypeError`` otherwise.

    Cloudflare's docs do not give the wording of its own error for a bad hint; this one names
    the value and lists the allowed ones.
    """
    if isinstance(hint, str) and hint in LOCATION_HINTS:
        return hint
    raise TypeError(
        f"invalid locationHint {hint!r}: a location hint is one of "
        f"{', '.join(LOCATION_HINTS)} (e.g. getByName(name, locationHint='weur'))"
    )


def check_jurisdiction(jurisdiction: object) -> str:
    """``jurisdiction`` if Cloudflare knows it; a clear ``TypeError`` otherwise."""
    if isinstance(jurisdiction, str) and jurisdiction in JURISDICTION_REGIONS:
        return jurisdiction
    raise TypeError(
        f"invalid jurisdiction {jurisdiction!r}: a jurisdiction is one of "
        f"{', '.join(JURISDICTIONS)} (e.g. env.NS.jurisdiction('eu'))"
    )


def check_caller_region(network: Network | None, region: object) -> str:
    """A caller's region (``lab.client(region)``): one of ``network``'s regions, or with no
    network one of the location hints."""
    if network is not None:
        return network.check_region(region)
    if region not in LOCATION_HINTS:
        raise ValueError(f"unknown region {region!r}: a caller's region is one of "
                         f"{', '.join(LOCATION_HINTS)}")
    return region  # (one of LOCATION_HINTS: a str)


class Network:
    """A table of round-trip times between regions, plus one lab's placements.

    Args:
        rtt_ms: round-trip times in milliseconds, ``{("weur", "enam"): 80, ...}`` (either
            order; the table is symmetric). Pairs not given keep the default table's value;
            regions not in Cloudflare's list may be added (``("mars", "enam")``) and then
            used as caller regions. A ``(r, r)`` entry sets the round trip within region
            ``r`` (default :data:`SAME_REGION_RTT_MS`).
        default_region: where calls come from when the caller has no region of its own (stubs
            from ``lab.env`` or ``lab.bind``); ``"enam"`` unless given.
        base: start from the default table (``True``) or from nothing (``False``: then every
            pair used must be given).

    A lab copies the table it is given, so one ``Network`` can configure several labs
    without them sharing placements.
    """

    def __init__(self, rtt_ms: Mapping[tuple[str, str], float] | None = None, *,
                 default_region: str = "enam", base: bool = True) -> None:
        table: dict[tuple[str, str], float] = {}
        if base:
            for (a, b), ms in CLOUDFLARE_REGIONS_RTT_MS.items():
                table[(a, b)] = table[(b, a)] = ms
        regions = list(LOCATION_HINTS) if base else []
        for key, ms in (rtt_ms or {}).items():
            if (not isinstance(key, tuple) or len(key) != 2
                    or not all(isinstance(r, str) and r for r in key)):
                raise TypeError(
                    f"a network table maps (region, region) pairs to round-trip milliseconds, "
                    f"e.g. {{('weur', 'enam'): 80}}; got the key {key!r}"
                )
            a, b = key
            if (isinstance(ms, bool) or not isinstance(ms, (int, float))
                    or not 0 < ms <= MAX_RTT_MS):  # (False for NaN too)
                raise ValueError(
                    f"the round trip between {a!r} and {b!r} must be a number of milliseconds "
                    f"> 0 and <= {MAX_RTT_MS:g} (a minute), got {ms!r}: a call waits half of "
                    "it on the way in and half on the way back"
                )
            table[(a, b)] = table[(b, a)] = float(ms)
            for region in key:
                if region not in regions:
                    regions.append(region)
        self._rtt_ms = table
        #: Every region the table knows (Cloudflare's hints first).
        self.regions: tuple[str, ...] = tuple(regions)
        if default_region not in self.regions:
            raise ValueError(
                f"default_region {default_region!r} is not a region of this network; "
                f"regions: {', '.join(self.regions)}"
            )
        self.default_region = default_region
        # Per lab (set by make_network): where each object lives, and the messages on their way.
        self._services: LabServices | None = None
        self._placements: dict[tuple[str, str], str] = {}
        self._hops = itertools.count(1)
        self._in_flight: dict[asyncio.Future[None], asyncio.Future[Any]] = {}

    # -- the table -------------------------------------------------------------------------

    def rtt(self, a: str, b: str) -> float:
        """Round-trip time between regions ``a`` and ``b``, in seconds."""
        ms = self._rtt_ms.get((a, b))
        if ms is None:
            if a == b and a in self.regions:
                ms = SAME_REGION_RTT_MS
            else:
                missing = [r for r in (a, b) if r not in self.regions]
                if missing:
                    raise ValueError(
                        f"unknown region {missing[0]!r}; regions of this network: "
                        f"{', '.join(self.regions)}"
                    )
                raise ValueError(f"this network has no round-trip time between {a!r} and {b!r}: "
                                 f"add it, e.g. Lab(network={{({a!r}, {b!r}): 100}})")
        return ms / 1000.0

    def one_way(self, a: str, b: str) -> float:
        """Half the round trip: what one message from ``a`` to ``b`` costs, in seconds."""
        return self.rtt(a, b) / 2.0

    def nearest(self, region: str, candidates: Iterable[str]) -> str:
        """The candidate region with the shortest round trip from ``region`` (first on ties)."""
        options = list(candidates)
        return min(options, key=lambda c: (self.rtt(region, c), options.index(c)))

    def check_region(self, region: object) -> str:
        """``region`` if this network knows it; a ``ValueError`` listing the regions otherwise."""
        if isinstance(region, str) and region in self.regions:
            return region
        raise ValueError(
            f"unknown region {region!r}: a caller's region is one of {', '.join(self.regions)}"
        )

    def table(self, regions: Iterable[str] | None = None) -> str:
        """The round-trip times (ms) between ``regions`` (default: all), as a printable grid."""
        shown = list(regions) if regions is not None else list(self.regions)
        width = max(7, *(len(r) + 1 for r in shown))
        lines = [" " * width + "".join(f"{r:>{width}}" for r in shown)]
        for r in shown:
            self.check_region(r)
        for a in shown:
            lines.append(f"{a:<{width}}" + "".join(f"{self._cell(a, b):>{width}}"
                                                   for b in shown))
        return "\n".join(lines)

    def _cell(self, a: str, b: str) -> str:
        """One cell of :meth:`table`: the round trip in ms, or ``-`` for a pair the table
        does not have (a custom region is given only the pairs it needs)."""
        ms = self._rtt_ms.get((a, b), SAME_REGION_RTT_MS if a == b else None)
        return "-" if ms is None else f"{ms:.0f}"

    def copy(self) -> Network:
        """The same table and default region, without placements (what each lab gets)."""
        twin = object.__new__(Network)
        twin._rtt_ms = dict(self._rtt_ms)
        twin.regions = self.regions
        twin.default_region = self.default_region
        twin._services = None
        twin._placements = {}
        twin._hops = itertools.count(1)
        twin._in_flight = {}
        return twin

    # -- placements --------------------------------------------------------------------------

    def region_of(self, target: Any) -> str | None:
        """Where the object behind ``target`` (a stub or an id) lives; ``None`` until its
        first call placed it."""
        self._require_lab()
        host = getattr(target, "_host", None)
        if host is not None:  # a stub
            return self._placements.get(host.storage_key)
        if hasattr(target, "toString") and hasattr(target, "namespace"):  # an id: look, not make
            return self._placements.get((target.namespace, target.toString()))
        raise TypeError(f"region_of() takes a stub or an id, got {type(target).__name__}: "
                        f"{target!r}")

    def placements(self) -> dict[str, str]:
        """Every placed object's label and region, in the order they were placed."""
        services = self._require_lab()
        labels = {h.storage_key: h.label for h in services.hosts()}
        return {labels.get(key, key[1][:8]): region for key, region in self._placements.items()}

    def place(self, host: ObjectHost, hint: str | None, caller_region: str,
              jurisdiction: str | None) -> str:
        """The region of ``host``'s object: placed now if this is its first call."""
        region = self._placements.get(host.storage_key)
        if region is not None:
            return region
        region, reason = self._choose(hint, caller_region, jurisdiction)
        self._record(host, region, reason, hint, caller_region, jurisdiction)
        return region

    def _choose(self, hint: str | None, caller_region: str,
                jurisdiction: str | None) -> tuple[str, str]:
        """Where a first call would place an object, and why (nothing recorded)."""
        if jurisdiction is not None:
            allowed = JURISDICTION_REGIONS[jurisdiction]
            if hint in allowed:
                region, reason = hint, "hint"
            else:
                region, reason = self.nearest(caller_region, allowed), "jurisdiction"
        elif hint is not None:
            region, reason = hint, "hint"
        else:
            region, reason = caller_region, "caller"
        return region, reason

    def _record(self, host: ObjectHost, region: str, reason: str, hint: str | None,
                caller_region: str, jurisdiction: str | None) -> None:
        self._placements[host.storage_key] = region
        bus = host.services.bus
        if bus.active:
            bus.emit(ObjectPlaced, host.label, host.object_id, region, reason, hint or "",
                     caller_region, jurisdiction or "")

    def region_of_host(self, host: ObjectHost) -> str:
        """The region an object calls *from*: its placement (an object first woken by an
        alarm or a socket, never called through a stub, counts as placed in the default
        region)."""
        region = self._placements.get(host.storage_key)
        if region is None:
            region = self.place(host, None, self.default_region, host.id.jurisdiction)
        return region

    # -- carrying calls ----------------------------------------------------------------------

    def carry(self, stub: DurableObjectStub, source: str, caller: str, method: str,
              deliver: Callable[[Any], asyncio.Future[Any]], *, sent: float | None = None,
              held: float = 0.0, link: Callable[[Any], Any] | None = None
              ) -> asyncio.Future[Any]:
        """Send one call from region ``source`` over the network; the future gets the reply
        once it has travelled back. ``deliver(origin)`` hands the call to its object when it
        arrives (the stub's ``ObjectHost.deliver``, handed down: the network only carries it).

        Attribution (attribution.py): the call's time from ``sent`` (default: now) to its
        arrival is network, less ``held`` seconds the caller's output gate held it; the way
        back is added to the call's network time when the reply lands.
        """
        host = stub._host
        services = host.services
        region = self._placements.get(host.storage_key)
        if region is None:
            # The first call places the object, but only once it can be sent: a call refused
            # here (a region pair the table lacks) leaves the object unplaced, free for the
            # next call to place it.
            jurisdiction = stub.id.jurisdiction
            region, reason = self._choose(stub._hint, source, jurisdiction)
            delay = self.one_way(source, region)
            self._record(host, region, reason, stub._hint, source, jurisdiction)
        else:
            delay = self.one_way(source, region)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        hop = next(self._hops)
        bus = services.bus
        clock = services.clock
        if sent is None:
            sent = clock.now()
        if bus.active:
            bus.emit(NetworkHopStarted, host.label, host.object_id, hop, "request", source, region,
                     delay, method, caller)
        # A future per message on its way, tracked by the lab: wait_idle() waits for it and
        # close() answers it (a message in flight on a manual clock would otherwise hang both).
        arrived: asyncio.Future[None] = loop.create_future()
        self._in_flight[arrived] = reply
        arrived.add_done_callback(self._landed)
        services.track(arrived)
        # E-order: a message never overtakes the one sent before it on the same stub.
        previous = stub._last_arrival
        stub._last_arrival = arrived

        def arrive() -> None:
            if arrived.done():  # answered by close()
                return
            if previous is not None and not previous.done():
                previous.add_done_callback(lambda _f: arrive())
                return
            arrived.set_result(None)
            if reply.done():
                return
            if bus.active:
                bus.emit(NetworkHopEnded, host.label, host.object_id, hop, "request", source,
                         region, delay, method, caller)
            try:
                inner = deliver((sent, held, link))
            except BaseException as exc:
                reply.set_exception(exc)
                return
            delivery = stub._last
            if delivery is not None and delivery.reply is inner:
                info = getattr(delivery, "info", None)
                if info is None:
                    info = delivery.info = {}
                info["route"] = (source, region, delay * 2)  # for the verdict
            else:
                delivery = None  # refused, or delayed by a fault: not attributed here
            inner.add_done_callback(
                lambda f: self._send_back(f, reply, host, hop, region, source, delay, method,
                                          caller, delivery))

        clock.call_at(clock.now() + delay, arrive)
        return reply

    def _send_back(self, outcome: asyncio.Future[Any], reply: asyncio.Future[Any],
                   host: ObjectHost, hop: int, region: str, source: str, delay: float,
                   method: str, caller: str, delivery: Any = None) -> None:
        """The reply (or the error) travels back to the caller's region."""
        if reply.done():
            relay_outcome(outcome, reply)  # marks a late error as retrieved
            return
        services = host.services
        bus = services.bus
        clock = services.clock
        if bus.active:
            bus.emit(NetworkHopStarted, host.label, host.object_id, hop, "reply", region, source,
                     delay, method, caller)
        returned: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._in_flight[returned] = reply
        returned.add_done_callback(self._landed)
        services.track(returned)

        def land() -> None:
            if returned.done():
                return
            returned.set_result(None)
            if bus.active:
                bus.emit(NetworkHopEnded, host.label, host.object_id, hop, "reply", region, source,
                         delay, method, caller)
            if delivery is not None and getattr(delivery, "end", None) is not None:
                # The way back is the call's too: it ends when the reply lands.
                now = clock.now()
                delivery.spent[NETWORK] += now - delivery.end
                delivery.since = delivery.end = now
            relay_outcome(outcome, reply)

        clock.call_at(clock.now() + delay, land)

    def _landed(self, message: asyncio.Future[None]) -> None:
        self._in_flight.pop(message, None)

    @property
    def in_flight(self) -> int:
        """Messages (requests or replies) on their way now."""
        return len(self._in_flight)

    def close(self, error: Callable[[], BaseException]) -> None:
        """Fail every call still on its way with ``error()`` (the lab is closing)."""
        for message, reply in list(self._in_flight.items()):
            if not message.done():
                message.set_result(None)
            if not reply.done():
                reply.set_exception(error())
                reply.exception()  # closing is not news to a caller that stopped listening
        self._in_flight.clear()

    def _require_lab(self) -> LabServices:
        if self._services is None:
            raise RuntimeError("this Network is a table only: pass it to Lab(network=...) and "
                               "use lab.network")
        return self._services

    def __repr__(self) -> str:
        placed = f", {len(self._placements)} objects placed" if self._services is not None else ""
        return f"<Network {len(self.regions)} regions, calls from {self.default_region}{placed}>"


def make_network(spec: object, services: LabServices) -> Network | None:
    """``Lab(network=...)``: ``None`` (no geography), ``"cloudflare-regions"``, a dict of
    round-trip milliseconds (over the default table), or a :class:`Network`."""
    if spec is None:
        return None
    if isinstance(spec, Network):
        network = spec.copy()
    elif spec == "cloudflare-regions":
        network = Network()
    elif isinstance(spec, Mapping):
        network = Network(spec)
    else:
        raise ValueError(
            f"network must be None (no geography), one of {', '.join(map(repr, NETWORKS))}, a "
            f"dict of round-trip milliseconds like {{('weur', 'enam'): 80}}, or a "
            f"durable_lab.network.Network; got {spec!r}"
        )
    network._services = services
    return network
