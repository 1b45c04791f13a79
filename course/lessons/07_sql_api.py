# %% tags=["claim-kit"]
# The source of notebooks/07_sql_api.ipynb
# (python scripts/build_lessons.py builds it: course/README.md).
# Not in the learner's notebook: this cell, and the cells tagged "claim", which
# tests/test_lesson_claims.py runs in the lesson's kernel, each where it stands.
from claim_kit import claim, html_of, settled, text_of

# isort: split

# %% [markdown]
# # 07 · The SQL API
#
# **Covers:** SQLite-backed objects (`lab.bind(NAME, Cls, sql=True)`, Cloudflare's
# `new_sqlite_classes`); `ctx.storage.sql.exec(query, *bindings)` with `toArray()`, `one()`,
# iteration; writes committed after the turn with the key-value writes; `transactionSync`;
# tables created in the constructor; why bindings and never f-strings.
# **You will be able to:** model an object's state as tables, query it with bindings, and keep
# multi-statement updates atomic.
# **Scenario:** a notes table and a game leaderboard, on memory labs (each object gets its own
# in-memory SQLite database).

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

# %% [markdown]
# ## A table per object
#
# **Predict:** the constructor creates a table. The object is evicted and constructed again:
# does `CREATE TABLE IF NOT EXISTS` wipe the notes?

# %%
class Notes(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")

    async def add(self, body):
        self.sql.exec("INSERT INTO notes(body) VALUES (?)", body)    # ? = a binding
        return self.sql.exec("SELECT count(*) AS n FROM notes").one().n

    async def all(self):
        return self.sql.exec("SELECT id, body FROM notes ORDER BY id").toArray()


lab = Lab(storage="memory", seed=1)
NOTES = lab.bind("NOTES", Notes, sql=True)
notes = NOTES.getByName("ada")
tables = widgets.sql_tables(lab, "NOTES:ada")    # the object's tables, live
tables

# %%
print(await notes.add("buy milk"), await notes.add("call Bob"))
await lab.evict(notes)
print(await notes.all())

# %% tags=["claim"]
claim("the object's tables, live", page=(".dl-sql", "call Bob"))
await settled(lab)
shown = text_of(tables)
assert "notes" in shown and "buy milk" in shown and "call Bob" in shown, shown
assert 'data-rows="2"' in html_of(tables), html_of(tables)[:300]

# %% [markdown]
# ## Every call is synchronous
#
# On a SQLite-backed object, `exec()` runs at once, with no `await`, and even `get()` /
# `put()` of the key-value API are synchronous underneath. Writes of one turn, SQL and
# key-value together, commit as one transaction after the turn, and the reply waits for it.
#
# **Predict:** a handler inserts a note and puts a key; the commit fails. What survives?

# %%
class Both(Notes):
    async def add_both(self, body):
        self.sql.exec("INSERT INTO notes(body) VALUES (?)", body)
        self.ctx.storage.put("last", body)
        return "ok"

    async def last(self):
        return await self.ctx.storage.get("last")


BOTH = lab.bind("BOTH", Both, sql=True)
both = BOTH.getByName("x")
await both.add_both("first")
lab.faults.fail_next_commit(both)
try:
    await both.add_both("second")
except Exception as exc:
    print("caller:", exc)
fresh = BOTH.getByName("x")
print(await fresh.all(), await fresh.last())

# %% [markdown]
# Neither the row nor the key of the failed turn survived: one transaction.
#
# ## `transactionSync`: all or nothing inside a turn
#
# **Predict:** a transfer moves points between two rows and raises in the middle. With
# `transactionSync`, what is left?

# %% tags=["claim"]
claim(
    "Neither the row nor the key of the failed turn survived",
    output=r"(?m)^\[\{'id': 1, 'body': 'first'\}\] first$",
)

# %%
class Wallets(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS w(name TEXT PRIMARY KEY, points INTEGER)")

    async def seed(self):
        self.sql.exec("INSERT OR REPLACE INTO w VALUES ('ann', 10), ('bob', 0)")

    async def transfer(self, amount):
        def move():
            self.sql.exec("UPDATE w SET points = points - ? WHERE name = 'ann'", amount)
            if amount > 10:
                raise ValueError("not enough points")
            self.sql.exec("UPDATE w SET points = points + ? WHERE name = 'bob'", amount)
        try:
            self.ctx.storage.transactionSync(move)
        except ValueError as exc:
            return f"refused: {exc}"
        return "moved"

    async def balances(self):
        return self.sql.exec("SELECT name, points FROM w ORDER BY name").toArray()


wallets = lab.bind("WALLETS", Wallets, sql=True).getByName("w")
await wallets.seed()
print(await wallets.transfer(4), await wallets.balances())
print(await wallets.transfer(50), await wallets.balances())

# %% [markdown]
# ## Bindings, always
#
# **Predict:** what does this f-string query do with the name `O'Brien`?

# %%
class Unsafe(Notes):
    async def find(self, name):
        return self.sql.exec(f"SELECT * FROM notes WHERE body = '{name}'").toArray()

unsafe = lab.bind("UNSAFE", Unsafe, sql=True).getByName("u")
try:
    print(await unsafe.find("O'Brien"))
except Exception as exc:
    print(type(exc).__name__, exc)

# %% [markdown]
# ## What Cloudflare bills: rows read and rows written
#
# Cloudflare bills SQL by the rows each statement **reads** and **writes**, and every cursor
# reports them: `rowsRead` and `rowsWritten` (the lab counts them as workerd does). A row
# counts as read whenever SQLite steps onto it, whether or not it ends up in the result.
#
# **Predict:** a board of 1,000 scores. `ORDER BY total DESC LIMIT 3` returns three rows: how
# many does it read? And once there is an index on `total`?

# %%
class Board(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.sql = ctx.storage.sql
        self.sql.exec("CREATE TABLE IF NOT EXISTS s(player TEXT PRIMARY KEY, total INTEGER)")

    async def fill(self, n):
        for i in range(n):
            self.sql.exec("INSERT INTO s VALUES (?, ?)", f"p{i}", i * 37 % n)

    async def best(self, n):
        cursor = self.sql.exec("SELECT player, total FROM s ORDER BY total DESC LIMIT ?", n)
        rows = cursor.toArray()
        return f"{len(rows)} rows returned, {cursor.rowsRead} read"

    async def run(self, query, *bindings):
        cursor = self.sql.exec(query, *bindings)
        return f"{cursor.rowsRead} read, {cursor.rowsWritten} written"


board = lab.bind("BOARD", Board, sql=True).getByName("game")
await board.fill(1000)
print("no index:       ", await board.best(3))
print("CREATE INDEX:   ", await board.run("CREATE INDEX by_total ON s(total)"))
print("with the index: ", await board.best(3))
print("one more score: ", await board.run("INSERT INTO s VALUES ('zoe', 5)"))

# %% [markdown]
# Without an index, SQLite reads every row of the table, and for each one the best three kept
# so far: 2,000 rows read for 3 returned, on every call. With the index it walks the index
# from its end: 3. The index is paid for in writes: once (1,001 rows written to build it: an
# entry per row, and its line in the schema), and on every insert (3 rows written: the row,
# the primary key's entry, the new index's entry). Exercise 07's `top(n)` is this query.

# %% tags=["claim"]
claim(
    "2,000 rows read for 3 returned",
    output=r"(?m)^no index: +3 rows returned, 2000 read$[\s\S]*^with the index: +3 rows "
           r"returned, 3 read$[\s\S]*^one more score: +0 read, 3 written$",
)
claim("1,001 rows written to build it", output=r"(?m)^CREATE INDEX: +\d+ read, 1001 written$")

# %% [markdown]
# ## Exercise 07 · a leaderboard in SQL
#
# `add_score(player, points)` returns the player's new total; `top(n)` returns the n best as
# `[{"player": ..., "total": ...}, ...]`, best first. The starter pastes values into SQL and
# sorts nothing. The check bound your class with `sql=True` and tries quotes, a name that is
# SQL, evictions and ordering; it also watches the statements `top(n)` runs, so the right rows
# sorted in Python do not count: SQL must sort and cut (`ORDER BY ... LIMIT`).

# %% exercise="07"
# Filled in from course/starters/ex07.py: its starter, then its check.

# %% [markdown]
# ---
# The lab stays open, so you can keep experimenting and its panels stay live. When you are
# done, `await lab.close()` closes it (every panel then says **LAB CLOSED**); restarting the
# kernel ends it too (each panel then says *Kernel restarted* and how to go on).

# %% [markdown]
# **Next:** [08 · WebSockets and hibernation](08_websockets_hibernation.ipynb).
