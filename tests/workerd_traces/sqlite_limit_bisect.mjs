// Item 6: the largest value workerd stores with put("k", value), found by bisection, for an
// ASCII string (a), a string of U+20AC (b, two bytes per character in V8) and a Uint8Array (c),
// on a KV-backed (kv) and a SQLite-backed (sql) class. Output: sqlite_limit.txt.
//   NODE_PATH=<scratch>/node_modules node sqlite_limit_bisect.mjs kv; ... sql
import { createRequire } from "node:module";
import { join } from "node:path";
const require = createRequire(join(process.env.NODE_PATH ?? process.cwd(), "x"));
const { Miniflare } = require("miniflare");
const script = `
import { DurableObject } from "cloudflare:workers";
export class S extends DurableObject {
  async t(kind, n) {
    const v = kind === "a" ? "x".repeat(n) : kind === "b" ? "\\u20ac".repeat(n) : new Uint8Array(n);
    try { await this.ctx.storage.put("k", v); return "ok"; } catch (e) { return e.message; }
  }
}
export default { async fetch(req, env) {
  const o = env.S.get(env.S.idFromName("x"));
  const u = new URL(req.url);
  return new Response(await o.t(u.searchParams.get("k"), Number(u.searchParams.get("n"))));
} };`;
const mf = new Miniflare({ modules: true, script, compatibilityDate: "2025-04-01",
  durableObjects: { S: { className: "S", useSQLite: process.argv[2] === "sql" } } });
async function ok(k, n) { return (await (await mf.dispatchFetch(`http://x/?k=${k}&n=${n}`)).text()); }
for (const k of ["a", "b", "c"]) {
  let lo = 1 << 20, hi = 4 << 20;
  if (k === "b") { lo = 1 << 19; hi = 2 << 20; }
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if ((await ok(k, mid)) === "ok") lo = mid; else hi = mid; }
  console.log(process.argv[2], k, "largest ok", lo, "first failing", hi, await ok(k, hi));
}
await mf.dispose();
