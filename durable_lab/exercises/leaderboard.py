"""Exercise 07: a leaderboard on the SQL API (``lab.bind(..., sql=True)``)."""

from __future__ import annotations

from ..lab import Lab
from ._core import CheckResult, Fail, Scenario, run_check
from ._statements import Statements, watching

__all__ = ["check_leaderboard"]

BINDINGS_HINT = (
    "Never paste values into SQL text (f-strings, % or +): a name with a quote breaks the "
    "statement, and a crafted name runs SQL of its own. Pass values as bindings: "
    "`sql.exec('SELECT total FROM scores WHERE player = ?', player)`.")


def _lab() -> Lab:
    return Lab(storage="memory", seed=1)


def _rows(value: object) -> list[tuple[object, object]]:
    """top()'s answer as (player, total) pairs, whatever the row shape."""
    out = []
    for row in value if isinstance(value, list) else []:
        if isinstance(row, dict):
            vals = list(row.values())
            player = row.get("player", vals[0] if vals else None)
            total = row.get("total", row.get("points", vals[1] if len(vals) > 1 else None))
            out.append((player, total))
        elif isinstance(row, (list, tuple)) and len(row) >= 2:
            out.append((row[0], row[1]))
        else:
            out.append((row, None))
    return out


async def _totals(cls: type) -> None:
    async with _lab() as lab:
        stub = lab.bind("BOARD", cls, sql=True).getByName("game-1")
        got = [await stub.add_score("ann", 10), await stub.add_score("bob", 7),
               await stub.add_score("ann", 5)]
        if got != [10, 7, 15]:
            raise Fail(f"add_score('ann', 10), add_score('bob', 7), add_score('ann', 5) "
                       f"returned {got}; expected [10, 7, 15].",
                       "add_score(player, points) adds to the player's total and returns the "
                       "new total. One statement can do both: INSERT ... ON CONFLICT(player) "
                       "DO UPDATE SET total = total + excluded.total, then SELECT the total.")


async def _quotes(cls: type) -> None:
    async with _lab() as lab:
        stub = lab.bind("BOARD", cls, sql=True).getByName("game-1")
        try:
            got = await stub.add_score("O'Brien", 5)
        except Exception as exc:
            raise Fail(f"add_score(\"O'Brien\", 5) raised {type(exc).__name__}: {exc}",
                       BINDINGS_HINT) from None
        if got != 5:
            raise Fail(f"add_score(\"O'Brien\", 5) returned {got!r}, not 5.", BINDINGS_HINT)


async def _injection(cls: type) -> None:
    async with _lab() as lab:
        ns = lab.bind("BOARD", cls, sql=True)
        stub = ns.getByName("game-1")
        await stub.add_score("ann", 10)
        evil = "x'; DELETE FROM scores; --"
        try:
            await stub.add_score(evil, 1)
        except Exception:
            stub = ns.getByName("game-1")
        top = _rows(await stub.top(5))
        if ("ann", 10) not in top:
            raise Fail(f"a player named {evil!r} scored, and afterwards top(5) returns "
                       f"{top}: ann's 10 points are gone.",
                       BINDINGS_HINT)


SORT_HINT = (
    "Let SQL sort and cut: `SELECT player, total FROM scores ORDER BY total DESC LIMIT ?`, "
    "with n as the binding, hands your code just n rows. Reading every row and sorting (or "
    "slicing) in Python gives the same answer today, but each top(n) then reads the whole "
    "table into your object: as the board grows, so do the rows read (which Cloudflare bills) "
    "and the memory, where SQL with an index on total looks at just n rows.")


async def _top(cls: type) -> None:
    statements = Statements()
    async with _lab() as lab:
        stub = lab.bind("BOARD", watching(cls, statements), sql=True).getByName("game-1")
        players = [("ann", 3), ("bob", 9), ("cat", 5), ("dan", 1), ("eve", 7)]
        for player, points in players:
            await stub.add_score(player, points)
        statements.clear()
        try:
            top = await stub.top(3)
        except TypeError as exc:
            raise Fail(f"top(3) raised {exc}", "Return plain data: `...toArray()` gives a list "
                       "of dicts; a Row from one() must be converted with dict(row).") from None
        pairs = _rows(top)
        if pairs != [("bob", 9), ("eve", 7), ("cat", 5)]:
            raise Fail(f"top(3) returned {top!r}; expected bob 9, eve 7, cat 5 in that "
                       "order, as [{'player': 'bob', 'total': 9}, ...].",
                       "Let SQL sort and cut: SELECT player, total FROM scores ORDER BY total "
                       "DESC LIMIT ?, with n as the binding.")
        ran = statements.rows()
        wide = [(query, rows) for query, rows in ran if rows > 3]
        if wide:
            query, rows = max(wide, key=lambda run: run[1])
            raise Fail(f"top(3) returned the right players, but to find them your object ran "
                       f"`{query}`, which handed it {rows} rows ({len(players)} players on the "
                       f"board): the sorting and cutting happened in Python, not in SQL.",
                       SORT_HINT)


async def _evicted(cls: type) -> None:
    async with _lab() as lab:
        stub = lab.bind("BOARD", cls, sql=True).getByName("game-1")
        await stub.add_score("ann", 10)
        await lab.evict(stub)
        got = await stub.add_score("ann", 1)
        if got != 11:
            raise Fail(f"after an eviction, add_score('ann', 1) returned {got!r} instead "
                       "of 11.",
                       "Keep scores in the SQL table (not in fields), and create the table "
                       "with CREATE TABLE IF NOT EXISTS in the constructor: it runs again "
                       "after every eviction.")


async def check_leaderboard(cls: type) -> CheckResult:
    """Exercise 07: ``add_score(player, points)`` returns the new total; ``top(n)``."""
    return await run_check(
        "07", "a leaderboard in SQL", cls,
        [Scenario("totals add up", _totals),
         Scenario("a player called O'Brien", _quotes),
         Scenario("a player whose name is SQL", _injection),
         Scenario("top(n) is sorted and cut by SQL", _top),
         Scenario("scores survive an eviction", _evicted)],
        methods=("add_score", "top"),
        praise="Bindings, ORDER BY ... LIMIT, and a table created idempotently: your object's "
               "SQLite database is as safe as any other.")
