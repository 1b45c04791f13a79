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
};
