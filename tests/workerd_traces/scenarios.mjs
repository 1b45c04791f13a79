// The scenarios: each is a default-export fetch handler (appended to objects.js) that drives
// the objects and returns the trace as text. record.mjs runs them.
const obj = `const obj = (env, name) => env.OBJ.get(env.OBJ.idFromName(name));`;

export default {
  gather_reads: {
    about: "item 1: Promise.all of three functions that each read storage (cold, then warm)",
    worker: `${obj}
export default { async fetch(req, env) {
  const o = obj(env, "g");
  const cold = await o.gatherReads();
  const warm = (await o.gatherReads()).slice(cold.length);
  return new Response("cold " + cold.join(", ") + "\\nwarm " + warm.join(", "));
} };`,
  },
  get_beside_ping: {
    about: "item 2: A and B each await Promise.all([storage.get(n), peer.ping()]) then put n+1",
    worker: `${obj}
export default { async fetch(req, env) {
  const o = obj(env, "gp");
  const results = await Promise.all([o.getBesidePing("A"), o.getBesidePing("B")]);
  return new Response("results " + results.join(", ") + "\\nlog " + (await o.getLog()).join(", ")
    + "\\nstored " + (await o.getBesidePing("C")));
} };`,
  },
  get_beside_fetch: {
    about: "item 2: as get_beside_ping, with fetch() to the other object instead of RPC",
    worker: `${obj}
export default { async fetch(req, env) {
  const o = obj(env, "gf");
  const results = await Promise.all([o.getBesideFetch("A"), o.getBesideFetch("B")]);
  return new Response("results " + results.join(", ") + "\\nlog " + (await o.getLog()).join(", ")
    + "\\nstored " + (await o.getBesideFetch("C")));
} };`,
  },
  two_pings: {
    about: "item 2: X awaits Promise.all of two calls to another object; Y arrives meanwhile",
    worker: `${obj}
export default { async fetch(req, env) {
  const o = obj(env, "tp");
  await Promise.all([o.twoPings("X"), o.plain("Y")]);
  return new Response("log " + (await o.getLog()).join(", "));
} };`,
  },
  websocket_close: {
    about: "item 12: sockets a, b, c accepted in that order; the client closes b, then c",
    worker: `
export default { async fetch(req, env) {
  const room = env.ROOM.get(env.ROOM.idFromName("r"));
  const url = new URL(req.url);
  if (url.pathname === "/log") {
    return new Response("order " + (await room.names()).join(" ") + "\\nlog " + (await room.getLog()).join(", "));
  }
  return room.fetch(req);
} };`,
    async drive(mf) {
      const sockets = {};
      for (const name of ["a", "b", "c"]) {
        const res = await mf.dispatchFetch(`http://lab/${name}`, { headers: { Upgrade: "websocket" } });
        sockets[name] = res.webSocket;
        sockets[name].accept();
      }
      const order = await (await mf.dispatchFetch("http://lab/log")).text();
      for (const name of ["b", "c"]) {
        sockets[name].close(1000, "bye");
        await new Promise((r) => setTimeout(r, 300));
      }
      const after = await (await mf.dispatchFetch("http://lab/log")).text();
      return order.split("\n")[0] + "\n" + after.split("\n")[1];
    },
  },
  sql_exec: {
    about: "items 9 and 11: cursors of several statements, rows read and written, SQL errors",
    only: ["sqlite"],
    worker: `
const CASES = [
  ["create", "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"],
  ["insert3", "INSERT INTO t(v) VALUES ('a'), ('b'), ('c')"],
  ["select_all", "SELECT * FROM t"],
  ["select_where_pk", "SELECT * FROM t WHERE id = 2"],
  ["select_where_scan", "SELECT * FROM t WHERE v = 'b'"],
  ["count", "SELECT count(*) AS n FROM t"],
  ["update_all", "UPDATE t SET v = v || '!'"],
  ["update_one", "UPDATE t SET v = 'z' WHERE id = 1"],
  ["update_none", "UPDATE t SET v = 'z' WHERE id = 99"],
  ["delete_one", "DELETE FROM t WHERE id = 3"],
  ["multi_insert_then_select", "INSERT INTO t(v) VALUES ('d'); SELECT * FROM t"],
  ["multi_select_then_insert", "SELECT * FROM t; INSERT INTO t(v) VALUES ('e')"],
  ["multi_two_selects", "SELECT 1 AS x; SELECT * FROM t"],
  ["create_index", "CREATE INDEX tv ON t(v)"],
  ["select_index", "SELECT id FROM t WHERE v = 'b!'"],
  ["insert_indexed", "INSERT INTO t(v) VALUES ('f')"],
  ["empty", ""],
  ["blank", "   "],
  ["comment", "-- nothing here"],
  ["block_comment", "/* nothing */"],
  ["trailing_semicolon", "SELECT 1 AS x;"],
  ["too_few_bindings", "SELECT ? AS a, ? AS b", 1],
  ["too_many_bindings", "SELECT ? AS a", 1, 2],
  ["syntax", "SELEC 1"],
  ["syntax_later", "SELECT * FROM t WHERE"],
  ["syntax_second_statement", "SELECT 1; SELEC 2"],
  ["no_table", "SELECT * FROM nope"],
  ["cf_table", "SELECT * FROM _cf_KV"],
  ["cf_create", "CREATE TABLE _cf_mine(x)"],
  ["pragma_page_size", "PRAGMA page_size"],
  ["pragma_table_info", "PRAGMA table_info(t)"],
  ["pragma_foreign_keys", "PRAGMA foreign_keys"],
  ["pragma_user_version", "PRAGMA user_version"],
  ["pragma_journal_mode", "PRAGMA journal_mode"],
  ["pragma_defer_fk", "PRAGMA defer_foreign_keys = ON"],
  ["pragma_quick_check", "PRAGMA quick_check"],
  ["pragma_data_version", "PRAGMA data_version"],
  ["pragma_case_sensitive_like", "PRAGMA case_sensitive_like = 1"],
  ["pragma_ignore_check_constraints", "PRAGMA ignore_check_constraints"],
  ["pragma_legacy_alter_table", "PRAGMA legacy_alter_table"],
  ["pragma_recursive_triggers", "PRAGMA recursive_triggers"],
  ["pragma_reverse_unordered_selects", "PRAGMA reverse_unordered_selects"],
  ["pragma_foreign_key_check", "PRAGMA foreign_key_check"],
  ["pragma_foreign_key_list", "PRAGMA foreign_key_list(t)"],
  ["pragma_index_list", "PRAGMA index_list(t)"],
  ["pragma_index_info", "PRAGMA index_info(tv)"],
  ["pragma_index_xinfo", "PRAGMA index_xinfo(tv)"],
  ["pragma_table_list", "PRAGMA table_list(t)"],
  ["pragma_table_xinfo", "PRAGMA table_xinfo(t)"],
  ["pragma_optimize", "PRAGMA optimize"],
  ["pragma_integrity_check", "PRAGMA integrity_check"],
  ["pragma_cache_size", "PRAGMA cache_size"],
  ["pragma_page_count", "PRAGMA page_count"],
  ["pragma_user_version_set", "PRAGMA user_version = 3"],
  ["no_column", "SELECT nope FROM t"],
  ["unrecognized", "SELECT 1 FROM t WHERE v = 'x' AND #"],
  ["syntax_mid", "SELECT v FROM t WHERE v = 'a' ORDER v"],
  ["syntax_unicode", "SELECT 'é' FROM t WHER 1"],
  ["cf_insert", "INSERT INTO _cf_KV VALUES ('k', 'v')"],
  ["cf_metadata", "SELECT * FROM _cf_METADATA"],
  ["cf_lower", "SELECT * FROM _CF_kv"],
  ["multi_empty_tail", "SELECT 1 AS x; -- done"],
  ["multi_bindings_first", "SELECT ? AS a; SELECT 2 AS b", 1],
  ["bind_true", "SELECT ? AS v, typeof(?) AS t", true, true],
  ["bind_false", "SELECT ? AS v, typeof(?) AS t", false, false],
  ["bind_int", "SELECT ? AS v, typeof(?) AS t", 42, 42],
  ["bind_float", "SELECT ? AS v, typeof(?) AS t", 1.5, 1.5],
  ["bind_2p53", "SELECT ? AS v, typeof(?) AS t", 2 ** 53, 2 ** 53],
  ["bind_2p53_plus", "SELECT ? AS v, typeof(?) AS t", 2 ** 53 + 2, 2 ** 53 + 2],
  ["bind_2p63", "SELECT ? AS v, typeof(?) AS t", 2 ** 63, 2 ** 63],
  ["bind_bigint", "SELECT ? AS v, typeof(?) AS t", 42n, 42n],
  ["bind_bigint_big", "SELECT ? AS v, typeof(?) AS t", 2n ** 60n, 2n ** 60n],
  ["bind_null", "SELECT ? AS v, typeof(?) AS t", null, null],
  ["bind_undefined", "SELECT ? AS v, typeof(?) AS t", undefined, undefined],
  ["bind_string", "SELECT ? AS v, typeof(?) AS t", "s", "s"],
  ["bind_bytes", "SELECT ? AS v, typeof(?) AS t", new Uint8Array([1, 2]), new Uint8Array([1, 2])],
  ["bind_object", "SELECT ? AS v", {}],
  ["bind_array", "SELECT ? AS v", [1]],
  ["int_result_big", "SELECT 9007199254740993 AS v"],
  ["too_big_value", "SELECT length(?) AS n", "x".repeat(3 * 1024 * 1024)],
];
export default { async fetch(req, env) {
  const o = env.SQL.get(env.SQL.idFromName("s"));
  return new Response(await o.run(CASES));
} };`,
  },
  sql_schema: {
    about: "item 11: the runtime's _cf_ tables appear when the KV API or an alarm needs them",
    only: ["sqlite"],
    extraObjects: () => ({ SCHEMA: { className: "Schema", useSQLite: true } }),
    worker: `
export default { async fetch(req, env) {
  const o = env.SCHEMA.get(env.SCHEMA.idFromName("s"));
  const out = [];
  for (const what of ["fresh", "create", "put", "delete", "alarm", "delete_alarm", "delete_all"]) {
    out.push(await o.step(what));
  }
  return new Response(out.join("\\n"));
} };`,
  },
  alarm_set_during_retry: {
    about: "item 4: the alarm fails at once; 0.5 s later a request sets the alarm 5 s ahead",
    runs: 2,
    worker: `
export default { async fetch(req, env) {
  const o = env.ALARMED.get(env.ALARMED.idFromName("a"));
  const path = new URL(req.url).pathname;
  if (path === "/arm") return new Response(await o.arm(10));
  if (path === "/set") return new Response(await o.setAt(5000));
  return new Response((await o.runs()).join(", "));
} };`,
    async drive(mf) {
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      await mf.dispatchFetch("http://lab/arm");
      await sleep(500);
      const set = await (await mf.dispatchFetch("http://lab/set")).text();
      await sleep(9000);
      const runs = await (await mf.dispatchFetch("http://lab/runs")).text();
      return `set ${set}\nruns ${runs}`;
    },
  },
  txn_alarm: {
    about: "item 5: txn.getAlarm/setAlarm/deleteAlarm, committed, thrown, rolled back",
    worker: `
export default { async fetch(req, env) {
  return new Response(await env.TXNALARM.get(env.TXNALARM.idFromName("x")).run());
} };`,
  },
  bcw_timeout_order: {
    about: "item 3: A's blockConcurrencyWhile runs past 30 s; B and C queued behind it",
    runs: 2,
    worker: `
export default { async fetch(req, env) {
  const o = env.BLOCKER.get(env.BLOCKER.idFromName("b"));
  const order = [];
  const note = (who, p) => p.then((v) => order.push(who + " ok " + v),
                                  (e) => order.push(who + " rejected " + e.message));
  const a = note("A", o.block());
  await new Promise((r) => setTimeout(r, 100));
  const b = note("B", o.ping("B"));
  const c = note("C", o.ping("C"));
  await Promise.all([a, b, c]);
  return new Response("order " + order.join(" | "));
} };`,
  },
  value_sizes: {
    about: "items 6 and 7: values of each kind of string near and over the limits; 200 keys",
    worker: `
const CASES = [
  ["ascii_fits", "ascii", 131066], ["ascii_over", "ascii", 131067], ["ascii_200k", "ascii", 200000],
  ["latin1_fits", "latin1", 131066], ["latin1_over", "latin1", 131067],
  ["bmp_fits", "bmp", 65532], ["bmp_over", "bmp", 65533], ["bmp_odd", "bmp", 100001],
  ["astral_over", "astral", 40000], ["mixed_over", "mixed", 70000],
  ["bytes_fits", "bytes", 131060], ["bytes_over", "bytes", 131072],
  ["sql_2mib", "ascii", 2097152], ["sql_2mib_plus", "ascii", 2097153], ["sql_3mib", "ascii", 3145728],
  ["keys128", "keys", 128], ["keys200", "keys", 200],
];
export default { async fetch(req, env) {
  return new Response(await env.SIZES.get(env.SIZES.idFromName("s")).run(CASES));
} };`,
  },
  none_values: {
    about: "item 8: undefined and null as stored values (a Python Worker's None is undefined)",
    worker: `
export default { async fetch(req, env) {
  return new Response(await env.NOTHING.get(env.NOTHING.idFromName("n")).run());
} };`,
  },
};
