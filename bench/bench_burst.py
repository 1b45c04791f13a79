"""10,000 new objects called at once (python bench/bench_burst.py [N] [--fd-limit 1024]).

Each scenario runs in a child process whose file-descriptor limit is lowered first (``ulimit
-n 1024``, the common Linux default; macOS's is 256): a lab on a folder, one binding (KV-backed,
then SQLite-backed), N stubs of N objects never seen before, and one call on each, all issued
at once with ``asyncio.gather``. Each call reads a key and writes it back, so every object
opens its database and commits once. Reported per scenario:

  answered   calls that returned their value
  resets     calls that failed with DurableObjectResetError (e.g. "storage operation exceeded
             timeout", the 30 s output-gate limit)
  errors     calls that failed otherwise (e.g. "Too many open files")
  answer s   from the first call to the last answer (or failure)
  close s    ``await lab.close()``
  peak fds   most file descriptors open at once (sampled every 100 ms from /proc/self/fd)
  peak RSS   the child's maximum resident set size

Then a check: a second lab on the same folder reads every object's value back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from durable_lab import DurableObject, DurableObjectResetError, Lab  # noqa: E402


class Counter(DurableObject):
    async def increment(self):
        n = (await self.ctx.storage.get("n")) or 0
        self.ctx.storage.put("n", n + 1)
        return n + 1

    async def read(self):
        return await self.ctx.storage.get("n")


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


async def scenario(kind: str, n: int, folder: str) -> dict[str, object]:
    peak = open_fds()
    stop = False

    async def sample() -> None:
        nonlocal peak
        while not stop:
            peak = max(peak, open_fds())
            await asyncio.sleep(0.1)

    sampler = asyncio.ensure_future(sample())
    lab = Lab(folder)
    ns = lab.bind("C", Counter, sql=(kind == "sql"))
    stubs = [ns.getByName(f"burst-{i}") for i in range(n)]
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(s.increment() for s in stubs), return_exceptions=True)
    answered_at = time.perf_counter() - started
    answered = sum(1 for o in outcomes if o == 1)
    resets = [o for o in outcomes if isinstance(o, DurableObjectResetError)]
    errors = [o for o in outcomes if isinstance(o, BaseException)
              and not isinstance(o, DurableObjectResetError)]
    closing = time.perf_counter()
    await lab.close()
    close_s = time.perf_counter() - closing
    stop = True
    await sampler
    # Read everything back in a fresh lab (what was acknowledged is there).
    check = Lab(folder)
    ns = check.bind("C", Counter, sql=(kind == "sql"))
    values = await asyncio.gather(*(ns.getByName(f"burst-{i}").read() for i in range(n)),
                                  return_exceptions=True)
    await check.close()
    stored = sum(1 for v in values if v == 1)
    lost = sum(1 for o, v in zip(outcomes, values, strict=True) if o == 1 and v != 1)
    return {
        "kind": kind, "n": n, "answered": answered, "resets": len(resets),
        "errors": len(errors), "first_error": repr((resets + errors)[0])[:160]
        if resets or errors else "", "answer_s": round(answered_at, 2),
        "close_s": round(close_s, 2), "peak_fds": peak,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stored": stored, "acknowledged_lost": lost,
    }


def child(kind: str, n: int, fd_limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, hard))
    with tempfile.TemporaryDirectory(prefix="bench_burst-") as tmp:
        result = asyncio.run(scenario(kind, n, str(Path(tmp) / "lab")))
    result["fd_limit"] = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=10_000)
    parser.add_argument("--fd-limit", type=int, default=1024)
    parser.add_argument("--child", choices=("kv", "sql"))
    parser.add_argument("--kinds", default="kv,sql")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.fd_limit)
        return
    print(f"burst of {args.n:,} new objects, one call each, all at once; ulimit -n "
          f"{args.fd_limit}; Python {sys.version.split()[0]}")
    print(f"{'':4} {'answered':>9} {'resets':>7} {'errors':>7} {'answer s':>9} {'close s':>8} "
          f"{'peak fds':>9} {'peak RSS':>9} {'read back':>10} {'lost':>5}")
    for kind in args.kinds.split(","):
        out = subprocess.run([sys.executable, __file__, str(args.n), "--fd-limit",
                              str(args.fd_limit), "--child", kind],
                             capture_output=True, text=True, timeout=3600)
        if out.returncode != 0 or not out.stdout.strip():
            print(f"{kind:4} failed: {out.stderr.strip().splitlines()[-3:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{kind:4} {r['answered']:>9,} {r['resets']:>7,} {r['errors']:>7,} "
              f"{r['answer_s']:>9.1f} {r['close_s']:>8.1f} {r['peak_fds']:>9,} "
              f"{r['peak_rss_mb']:>6,} MB {r['stored']:>10,} {r['acknowledged_lost']:>5,}")
        if r["first_error"]:
            print(f"     first failure: {r['first_error']}")


if __name__ == "__main__":
    main()
