// Records workerd's behaviour for the issue #20 scenarios (tests/test_fidelity_round3.py).
//
//   cd <scratch dir> && npm install miniflare@4
//   NODE_PATH=<scratch dir>/node_modules node tests/workerd_traces/record.mjs [scenario...]
//
// Every scenario runs RUNS times on each flavour (in-memory and on-disk storage, KV-backed and
// SQLite-backed classes); a scenario is written to traces/<name>.txt only if every run printed
// the same trace, else the differing runs are reported and nothing is written.
import { createRequire } from "node:module";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(join(process.env.NODE_PATH ?? process.cwd(), "x"));
const { Miniflare } = require("miniflare");
const here = dirname(fileURLToPath(import.meta.url));
const RUNS = Number(process.env.RUNS ?? 3);

const objects = readFileSync(join(here, "objects.js"), "utf8");
const scenarios = (await import(join(here, "scenarios.mjs"))).default;

const FLAVOURS = [
  ["mem-kv", false, false], ["mem-sqlite", false, true],
  ["disk-kv", true, false], ["disk-sqlite", true, true],
];

async function runOnce(scenario, disk, sqlite) {
  const dir = disk ? mkdtempSync(join(tmpdir(), "do-")) : undefined;
  const script = objects + "\n" + scenario.worker;
  const mf = new Miniflare({
    modules: true, script, compatibilityDate: "2025-04-01",
    compatibilityFlags: scenario.flags ?? [],
    durableObjects: {
      OBJ: { className: "Obj", useSQLite: sqlite },
      PEER: { className: "Peer", useSQLite: sqlite },
      ROOM: { className: "Room", useSQLite: sqlite },
      ALARMED: { className: "Alarmed", useSQLite: sqlite },
      TXNALARM: { className: "TxnAlarm", useSQLite: sqlite },
      BLOCKER: { className: "Blocker", useSQLite: sqlite },
      SIZES: { className: "Sizes", useSQLite: sqlite },
      NOTHING: { className: "Nothing", useSQLite: sqlite },
      ...(sqlite ? { SQL: { className: "Sql", useSQLite: true } } : {}),
      ...(scenario.extraObjects ? scenario.extraObjects(sqlite) : {}),
    },
    durableObjectsPersist: disk ? dir : false,
  });
  try {
    if (scenario.drive) return (await scenario.drive(mf)).trim();
    const res = await mf.dispatchFetch("http://lab/");
    return (await res.text()).trim();
  } finally {
    await mf.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

const wanted = process.argv.slice(2);
const { version } = require("miniflare/package.json");
for (const [name, scenario] of Object.entries(scenarios)) {
  if (wanted.length && !wanted.includes(name)) continue;
  const flavours = FLAVOURS.filter(([f, , sqlite]) =>
    !scenario.only || scenario.only.includes(sqlite ? "sqlite" : "kv"));
  const runsEach = scenario.runs ?? RUNS;
  const out = [`# ${name}: ${scenario.about}`, `# miniflare ${version}, ${runsEach} runs per flavour, identical`];
  let stable = true;
  for (const [flavour, disk, sqlite] of flavours) {
    const runs = [];
    for (let i = 0; i < runsEach; i++) runs.push(await runOnce(scenario, disk, sqlite));
    if (runs.some((r) => r !== runs[0])) {
      stable = false;
      console.log(`${name} ${flavour}: NOT deterministic\n${runs.join("\n---\n")}`);
    }
    out.push(`[${flavour}]`, runs[0]);
  }
  console.log(out.join("\n"));
  if (stable) writeFileSync(join(here, `${name}.txt`), out.join("\n") + "\n");
}
