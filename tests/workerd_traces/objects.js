// Durable Object classes for the issue #20 scenarios, run on workerd through Miniflare by
// record.mjs. Each method returns (or the scenario collects) a log whose order is the trace.
import { DurableObject } from "cloudflare:workers";

export class Peer extends DurableObject {
  async ping(who) { return `pong ${who}`; }
  async fetch(request) { return new Response("pong"); }
}

export class Obj extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.log = [];
  }
  peer() { return this.env.PEER.get(this.env.PEER.idFromName("p")); }
  async getLog() { return this.log; }
  async put(key, value) { await this.ctx.storage.put(key, value); return "ok"; }

  // item 1: Promise.all over two functions that each read storage
  async readOne(who) {
    this.log.push(`${who}:start`);
    const v = await this.ctx.storage.get(who);
    this.log.push(`${who}:got ${v}`);
    return v;
  }
  async gatherReads() {
    await Promise.all([this.readOne("a"), this.readOne("b"), this.readOne("c")]);
    return this.log;
  }

  // item 2: a storage read beside a call to another object
  async getBesidePing(who) {
    this.log.push(`${who}:start`);
    const [n] = await Promise.all([this.ctx.storage.get("n"), this.peer().ping(who)]);
    const next = (n ?? 0) + 1;
    await this.ctx.storage.put("n", next);
    this.log.push(`${who}:end ${next}`);
    return next;
  }
  async getBesideFetch(who) {
    this.log.push(`${who}:start`);
    const [n] = await Promise.all([this.ctx.storage.get("n"), this.peer().fetch(`https://peer/${who}`)]);
    const next = (n ?? 0) + 1;
    await this.ctx.storage.put("n", next);
    this.log.push(`${who}:end ${next}`);
    return next;
  }
  async twoPings(who) {
    this.log.push(`${who}:start`);
    await Promise.all([this.peer().ping(who), this.peer().ping(who)]);
    this.log.push(`${who}:end`);
    return who;
  }
  async plain(who) { this.log.push(`${who}:ran`); return who; }
}

export class Room extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.log = [];
  }
  async fetch(request) {
    const name = new URL(request.url).pathname.slice(1);
    const [client, server] = Object.values(new WebSocketPair());
    this.ctx.acceptWebSocket(server, [name]);
    return new Response(null, { status: 101, webSocket: client });
  }
  async names() {
    return this.ctx.getWebSockets().map((ws) => this.ctx.getTags(ws)[0]);
  }
  async getLog() { return this.log; }
  async webSocketClose(ws, code, reason, wasClean) {
    const name = this.ctx.getTags(ws)[0];
    this.log.push(`${name}:close ${code} readyState=${ws.readyState}`);
    try {
      ws.send("after close");
      this.log.push(`${name}:send ok`);
    } catch (e) {
      this.log.push(`${name}:send threw ${e.constructor.name}: ${e.message}`);
    }
    this.log.push(`${name}:after send readyState=${ws.readyState}`);
    const names = this.ctx.getWebSockets().map((w) => this.ctx.getTags(w)[0]);
    this.log.push(`${name}:getWebSockets ${names.join(" ")}`);
  }
}

// item 11: which tables a SQLite-backed object's database holds as it is used (the runtime's
// _cf_ tables appear in sqlite_master and count in whole-database reads)
export class Schema extends DurableObject {
  async alarm() {}
  async step(what) {
    const sql = this.ctx.storage.sql;
    if (what === "create") sql.exec("CREATE TABLE t(x)");
    if (what === "put") await this.ctx.storage.put("k", 1);
    if (what === "alarm") await this.ctx.storage.setAlarm(Date.now() + 3600000);
    if (what === "delete_alarm") await this.ctx.storage.deleteAlarm();
    if (what === "delete") await this.ctx.storage.delete("k");
    if (what === "delete_all") await this.ctx.storage.deleteAll();
    const names = sql.exec("SELECT type, name FROM sqlite_master ORDER BY name").toArray()
      .map((r) => `${r.type}:${r.name}`).join(",");
    const check = sql.exec("PRAGMA quick_check");
    check.toArray();
    return `${what} schema=[${names}] quick_check_read=${check.rowsRead}`;
  }
}

// items 9-11: what sql.exec() reports and refuses (a SQLite-backed class only)
export class Sql extends DurableObject {
  async run(cases) {
    const sql = this.ctx.storage.sql;
    const out = [];
    for (const [label, query, ...bindings] of cases) {
      try {
        const cursor = sql.exec(query, ...bindings);
        const rows = cursor.toArray();
        out.push(`${label} rows=${JSON.stringify(rows, (k, v) => typeof v === "bigint" ? `${v}n` : v instanceof ArrayBuffer ? `bytes(${v.byteLength})` : v)} read=${cursor.rowsRead} written=${cursor.rowsWritten}`);
      } catch (e) {
        out.push(`${label} threw ${e.constructor.name}: ${e.message}`);
      }
    }
    return out.join("\n");
  }
}

// item 4: setAlarm() from a request while a failed alarm waits for its retry
export class Alarmed extends DurableObject {
  async arm(delay) {
    this.ctx.storage.put("t0", Date.now());
    await this.ctx.storage.setAlarm(Date.now() + delay);
    return "armed";
  }
  async setAt(delay) {
    const t = Date.now() + delay;
    await this.ctx.storage.setAlarm(t);
    const got = await this.ctx.storage.getAlarm();
    return got === t ? "getAlarm is the new time" : `getAlarm ${got === null ? "null" : "other"}`;
  }
  async runs() { return (await this.ctx.storage.get("runs")) ?? []; }
  async alarm(info) {
    const t0 = await this.ctx.storage.get("t0");
    const runs = (await this.ctx.storage.get("runs")) ?? [];
    const elapsed = Date.now() - t0;
    runs.push(`retryCount=${info.retryCount} isRetry=${info.isRetry} after ${elapsed < 1500 ? "<1.5s" : elapsed < 4500 ? "1.5-4.5s" : elapsed < 7000 ? "4.5-7s" : ">7s"}`);
    await this.ctx.storage.put("runs", runs);
    if (runs.length === 1) throw new Error("first attempt fails");
  }
}

// item 5: the transaction's alarm methods
export class TxnAlarm extends DurableObject {
  async run() {
    const s = this.ctx.storage;
    const out = [];
    const show = async (label) => {
      const a = await s.getAlarm();
      out.push(`${label} ${a === null ? "null" : a === 4e12 ? "t1" : a === 5e12 ? "t2" : a === 6e12 ? "t3" : a}`);
    };
    await s.transaction(async (txn) => {
      out.push(`has ${typeof txn.getAlarm} ${typeof txn.setAlarm} ${typeof txn.deleteAlarm}`);
      await txn.setAlarm(4e12);
      const inside = await txn.getAlarm();
      out.push(`inside ${inside === 4e12 ? "t1" : inside}`);
    });
    await show("after commit");
    try {
      await s.transaction(async (txn) => {
        await txn.setAlarm(5e12);
        throw new Error("boom");
      });
    } catch (e) { out.push(`threw ${e.message}`); }
    await show("after throw");
    await s.transaction(async (txn) => {
      await txn.setAlarm(6e12);
      txn.rollback();
    });
    await show("after rollback");
    await s.transaction(async (txn) => {
      await txn.deleteAlarm();
      txn.rollback();
    });
    await show("after delete rolled back");
    await s.transaction(async (txn) => { await txn.deleteAlarm(); });
    await show("after delete");
    return out.join("\n");
  }
  async alarm() {}
}

// item 3: a blockConcurrencyWhile() that times out, with deliveries queued behind it
export class Blocker extends DurableObject {
  async block() {
    await this.ctx.blockConcurrencyWhile(async () => {
      await new Promise((r) => setTimeout(r, 35000));
    });
    return "A done";
  }
  async ping(who) { return who; }
}

// items 6 and 7: how value size is measured, and keys per call
export class Sizes extends DurableObject {
  async run(cases) {
    const out = [];
    for (const [label, kind, n] of cases) {
      let value;
      if (kind === "ascii") value = "x".repeat(n);
      else if (kind === "latin1") value = "\u00e9".repeat(n);
      else if (kind === "bmp") value = "\u20ac".repeat(n);
      else if (kind === "astral") value = "\u{1F600}".repeat(n);
      else if (kind === "mixed") value = "x" + "\u20ac".repeat(n);
      else if (kind === "bytes") value = new Uint8Array(n);
      else if (kind === "keys") {
        const keys = Array.from({ length: n }, (_, i) => `k${i}`);
        for (const op of ["get", "delete"]) {
          try { await this.ctx.storage[op](keys); out.push(`${label}:${op} ok`); }
          catch (e) { out.push(`${label}:${op} threw ${e.constructor.name}: ${e.message}`); }
        }
        const entries = Object.fromEntries(keys.map((k) => [k, 1]));
        try { await this.ctx.storage.put(entries); out.push(`${label}:put ok`); }
        catch (e) { out.push(`${label}:put threw ${e.constructor.name}: ${e.message}`); }
        continue;
      }
      try {
        await this.ctx.storage.put("k", value);
        const back = await this.ctx.storage.get("k");
        out.push(`${label} stored ${back.length === value.length}`);
      } catch (e) {
        out.push(`${label} threw ${e.constructor.name}: ${e.message}`);
      }
    }
    return out.join("\n");
  }
}

// item 8: undefined (what a Python Worker's None becomes through Pyodide) as a stored value
export class Nothing extends DurableObject {
  async run() {
    const s = this.ctx.storage;
    const out = [];
    const show = (v) => (v === undefined ? "undefined" : v === null ? "null" : JSON.stringify(v));
    for (const [label, f] of [
      ["put_undefined", () => s.put("u", undefined)],
      ["put_null", () => s.put("n", null)],
      ["put_entries_undefined", () => s.put({ e: undefined })],
      ["put_nested_undefined", () => s.put("d", { a: undefined, b: [undefined] })],
      ["put_x_then_entries_undefined", async () => { await s.put("x", 1); await s.put({ x: undefined }); }],
    ]) {
      try { await f(); out.push(`${label} ok`); }
      catch (e) { out.push(`${label} threw ${e.constructor.name}: ${e.message}`); }
    }
    const d = await s.get("d");
    out.push(`nested ${"a" in d ? "has a=" + show(d.a) : "no a"} b=[${show(d.b[0])}]`);
    for (const k of ["u", "n", "e", "x", "missing"]) {
      out.push(`get_${k} ${show(await s.get(k))}`);
    }
    const many = await s.get(["u", "n", "e", "x", "missing"]);
    out.push(`get_many ${[...many.keys()].join(",")}`);
    const listed = await s.list();
    out.push(`list ${[...listed.entries()].map(([k, v]) => `${k}=${show(v)}`).join(",")}`);
    return out.join("\n");
  }
}
