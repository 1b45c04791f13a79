"""The workshop preflight: N learners log in to a running hub and work through a lesson.

Run by ``bash scripts/hub.sh --check --users N`` against the hub it has just started (the
instructor's rehearsal the day before). Every learner, in parallel, does what a browser does,
without a browser:

1. logs in through the hub's login form (the first login makes the learner), then asks the
   hub's REST API for a token with their name and the workshop password;
2. starts their server through the REST API and waits for it (the *spawn* time);
3. checks the server lands on the tour and that the course is in their home;
4. opens the tour and one lesson as notebook sessions (the server's REST API) and runs every
   code cell through the kernel's websocket, as JupyterLab does, counting the panels the
   lesson opens (widget comms) and any error (the *run* time; the kernel's CPU time);
5. tries to reach the next learner's server and files through the hub and the proxy (must be
   refused: 403 or 404), and, when learners have their own Unix ids, to read the next
   learner's home from its own kernel (must be denied);
6. the first learner also stops and restarts their server: a file they wrote must still be
   there, and a lesson they deleted must be back.

Also checked once: a wrong password is refused (login form and REST API), and the idle culler
service is running. One line per learner, a summary, exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

import requests
import websocket  # websocket-client

LANDING = "/lab/tree/notebooks/00_tour.ipynb"
TOUR = "notebooks/00_tour.ipynb"
PROBE = """
import json as _j, os as _o, resource as _r
_u = _r.getrusage(_r.RUSAGE_SELF)
_peak = _cpu = None
def _read(path):
    try:
        return open(path).read()
    except OSError:
        return None
for _line in open('/proc/self/cgroup'):
    _n, _c, _p = _line.strip().split(':', 2)
    _c = _c.split(',')
    if 'memory' in _c and _read('/sys/fs/cgroup/memory' + _p + '/memory.max_usage_in_bytes'):
        _peak = int(_read('/sys/fs/cgroup/memory' + _p + '/memory.max_usage_in_bytes'))
    if 'cpuacct' in _c:
        for _m in ('cpuacct', 'cpu,cpuacct', 'cpuacct,cpu'):
            if _read('/sys/fs/cgroup/' + _m + _p + '/cpuacct.usage'):
                _cpu = int(_read('/sys/fs/cgroup/' + _m + _p + '/cpuacct.usage')) / 1e9
    if _c == [''] and _read('/sys/fs/cgroup' + _p + '/memory.peak'):  # cgroup v2
        _peak = int(_read('/sys/fs/cgroup' + _p + '/memory.peak'))
        for _l in (_read('/sys/fs/cgroup' + _p + '/cpu.stat') or '').splitlines():
            if _l.startswith('usage_usec '):
                _cpu = int(_l.split()[1]) / 1e6
print(_j.dumps({'cpu': _u.ru_utime + _u.ru_stime, 'rss_kb': _u.ru_maxrss, 'group_peak': _peak,
                'group_cpu': _cpu, 'uid': _o.getuid(), 'home': _o.environ.get('HOME')}))
"""
PEEK = """
import os as _o
_p = _o.path.join(_o.path.dirname(_o.environ['HOME']), {other!r}, 'notebooks')
try:
    print('READABLE', len(_o.listdir(_p)))
except PermissionError:
    print('DENIED')
except FileNotFoundError:
    print('MISSING')
"""


class Failed(Exception):
    pass


@dataclass
class Learner:
    name: str
    password: str
    spawn: float = 0.0
    run: float = 0.0
    runs: dict[str, float] = field(default_factory=dict)
    cpu: float = 0.0
    kernel_peak_mb: float = 0.0
    group_peak_mb: float | None = None
    group_cpu: float | None = None  # CPU s of the learner's cgroup: server and kernels
    panels: int = 0
    isolation: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    token: str = ""
    uid: int = 0
    home: str = ""

    def line(self) -> str:
        peak = f"kernel peak {self.kernel_peak_mb:.0f} MB"
        if self.group_peak_mb is not None:
            peak += f", learner peak {self.group_peak_mb:.0f} MB"
        runs = ", ".join(f"{k} {v:.1f}s" for k, v in self.runs.items())
        status = "ok" if not self.errors else f"FAILED: {'; '.join(self.errors)}"
        cpu = f"cpu {self.cpu:4.1f}s" + (f" (learner {self.group_cpu:.1f}s)"
                                         if self.group_cpu is not None else "")
        return (f"{self.name:<12} spawn {self.spawn:5.1f}s  run {self.run:5.1f}s ({runs})  "
                f"{cpu}  {peak}  widgets {self.panels}  "
                f"isolation {'/'.join(self.isolation) or '-'}  errors {len(self.errors)}  "
                f"{status}" + (f"  [{'; '.join(self.notes)}]" if self.notes else ""))


class Hub:
    """The hub's REST API and the proxy in front of the learners' servers."""

    def __init__(self, url: str, timeout: float):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def login_form(self, name: str, password: str) -> requests.Session:
        """Log in as a browser does; returns the session holding the hub's cookie."""
        session = requests.Session()
        page = session.get(f"{self.url}/hub/login", timeout=self.timeout)
        page.raise_for_status()
        xsrf = session.cookies.get("_xsrf", "")
        reply = session.post(f"{self.url}/hub/login?next=", timeout=self.timeout,
                             data={"username": name, "password": password, "_xsrf": xsrf},
                             allow_redirects=False)
        if reply.status_code != 302:
            raise Failed(f"login form refused {name!r} (HTTP {reply.status_code})")
        return session

    def token(self, name: str, password: str) -> requests.Response:
        return requests.post(f"{self.url}/hub/api/users/{quote(name)}/tokens",
                             json={"auth": {"username": name, "password": password},
                                   "note": "workshop preflight", "expires_in": 3600},
                             timeout=self.timeout)

    def call(self, method: str, path: str, token: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token}"}
        return requests.request(method, f"{self.url}{path}", headers=headers,
                                timeout=self.timeout, allow_redirects=False, **kwargs)

    def start_server(self, learner: Learner, budget: float) -> float:
        started = time.perf_counter()
        reply = self.call("POST", f"/hub/api/users/{learner.name}/server", learner.token)
        if reply.status_code not in (201, 202):
            raise Failed(f"start server: HTTP {reply.status_code} {reply.text[:200]}")
        while time.perf_counter() - started < budget:
            user = self.call("GET", f"/hub/api/users/{learner.name}", learner.token).json()
            server = user.get("servers", {}).get("")
            if server and server.get("ready"):
                return time.perf_counter() - started
            if not server and not user.get("pending"):
                raise Failed("server stopped while starting (see the hub's log)")
            time.sleep(0.25)
        raise Failed(f"server not ready after {budget:.0f}s")

    def stop_server(self, learner: Learner, budget: float) -> None:
        reply = self.call("DELETE", f"/hub/api/users/{learner.name}/server", learner.token)
        if reply.status_code not in (202, 204):
            raise Failed(f"stop server: HTTP {reply.status_code}")
        deadline = time.perf_counter() + budget
        while time.perf_counter() < deadline:
            user = self.call("GET", f"/hub/api/users/{learner.name}", learner.token).json()
            if not user.get("servers") and not user.get("pending"):
                return
            time.sleep(0.25)
        raise Failed(f"server still running {budget:.0f}s after stop")


def decode(frame: str | bytes) -> dict:
    """A kernel message from a websocket frame. Messages with binary buffers (Bokeh's arrays)
    come as one binary frame: a count of parts, their offsets, then the JSON message first."""
    if isinstance(frame, str):
        return json.loads(frame)
    parts = int.from_bytes(frame[:4], "big")
    offsets = [int.from_bytes(frame[4 + 4 * i:8 + 4 * i], "big") for i in range(parts)]
    end = offsets[1] if parts > 1 else len(frame)
    return json.loads(frame[offsets[0]:end].decode())


class Kernel:
    """One notebook session on a learner's server, driven over the kernel's websocket."""

    def __init__(self, hub: Hub, learner: Learner, path: str):
        self.hub, self.learner, self.path = hub, learner, path
        base = f"/user/{learner.name}/api"
        reply = hub.call("POST", f"{base}/sessions", learner.token,
                         json={"path": path, "type": "notebook", "name": path.split("/")[-1],
                               "kernel": {"name": "python3"}})
        if reply.status_code != 201:
            raise Failed(f"open {path}: HTTP {reply.status_code} {reply.text[:200]}")
        self.session = reply.json()["id"]
        kernel = reply.json()["kernel"]["id"]
        ws_url = hub.url.replace("http", "ws", 1) + f"{base}/kernels/{kernel}/channels"
        self.ws = websocket.create_connection(
            ws_url, header=[f"Authorization: token {learner.token}"], timeout=hub.timeout)
        self.comms = 0

    def execute(self, code: str, budget: float) -> tuple[list[str], str]:
        """Run code; return (errors, stdout text)."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "preflight",
                       "session": self.session, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        errors: list[str] = []
        out: list[str] = []
        replied = idle = False
        deadline = time.perf_counter() + budget
        while not (replied and idle):
            if time.perf_counter() > deadline:
                raise Failed(f"{self.path}: a cell ran longer than {budget:.0f}s")
            try:
                message = decode(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            kind = message.get("msg_type") or message["header"]["msg_type"]
            if kind == "comm_open":
                self.comms += 1  # a panel (or one of its widgets) opened in the kernel
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content = message.get("content", {})
            if kind == "error":
                errors.append(f"{content.get('ename')}: {content.get('evalue')}")
            elif kind == "stream" and content.get("name") == "stdout":
                out.append(content.get("text", ""))
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
            elif kind == "execute_reply":
                replied = True
                if content.get("status") == "error" and not errors:
                    errors.append(f"{content.get('ename')}: {content.get('evalue')}")
        return errors, "".join(out)

    def run_notebook(self, cell_budget: float) -> list[str]:
        reply = self.hub.call("GET", f"/user/{self.learner.name}/api/contents/{self.path}",
                              self.learner.token, params={"content": "1"})
        if reply.status_code != 200:
            raise Failed(f"{self.path} is not in the learner's home (HTTP {reply.status_code})")
        errors = []
        for index, cell in enumerate(reply.json()["content"]["cells"]):
            if cell["cell_type"] != "code":
                continue
            expected = "raises-exception" in cell.get("metadata", {}).get("tags", [])
            found, _ = self.execute(cell["source"], cell_budget)
            if found and not expected:
                errors.append(f"{self.path} cell {index}: {found[0]}")
                break  # as "Run All" does: the cells below depend on this one
        return errors

    def close(self) -> None:
        self.ws.close()
        self.hub.call("DELETE", f"/user/{self.learner.name}/api/sessions/{self.session}",
                      self.learner.token)


def lesson_path(hub: Hub, learner: Learner, lesson: str) -> str:
    listing = hub.call("GET", f"/user/{learner.name}/api/contents/notebooks",
                       learner.token).json()
    names = sorted(item["name"] for item in listing.get("content", [])
                   if item["name"].startswith(lesson) and item["name"].endswith(".ipynb"))
    if not names:
        raise Failed(f"no lesson {lesson!r} in the learner's notebooks/")
    return f"notebooks/{names[0]}"


def work(hub: Hub, learner: Learner, lesson: str, args: argparse.Namespace) -> None:
    hub.login_form(learner.name, learner.password)
    reply = hub.token(learner.name, learner.password)
    if reply.status_code != 201:
        raise Failed(f"token with name and password: HTTP {reply.status_code}")
    learner.token = reply.json()["token"]
    learner.spawn = hub.start_server(learner, args.spawn_budget)

    landing = hub.call("GET", f"/user/{learner.name}/", learner.token)
    where = urlparse(landing.headers.get("Location", "")).path
    if not where.endswith(LANDING):
        learner.errors.append(f"lands on {where or landing.status_code}, not the tour")

    started = time.perf_counter()
    for path in (TOUR, lesson_path(hub, learner, lesson)):
        t0 = time.perf_counter()
        kernel = Kernel(hub, learner, path)
        try:
            learner.errors += kernel.run_notebook(args.cell_budget)
            _, probe = kernel.execute(PROBE, args.cell_budget)
            found = json.loads(probe.strip().splitlines()[-1])
            learner.cpu += found["cpu"]
            learner.kernel_peak_mb = max(learner.kernel_peak_mb, found["rss_kb"] / 1024)
            if found["group_peak"] is not None:
                learner.group_peak_mb = found["group_peak"] / 2**20
            if found["group_cpu"] is not None:
                learner.group_cpu = found["group_cpu"]
            learner.uid, learner.home = found["uid"], found["home"]
            if path != TOUR:
                learner.panels = kernel.comms
        finally:
            kernel.close()
        learner.runs[path.split("/")[-1].split("_")[0]] = time.perf_counter() - t0
    learner.run = time.perf_counter() - started
    if learner.panels == 0:
        learner.errors.append(f"lesson {lesson} opened no panel")


def probe_isolation(hub: Hub, learner: Learner, other: Learner, isolated_uids: bool) -> None:
    """The learner tries the other learner's server and files: every try must be refused."""
    tries = {
        "hub-api": hub.call("GET", f"/hub/api/users/{other.name}", learner.token),
        "start": hub.call("POST", f"/hub/api/users/{other.name}/server", learner.token),
        "files": hub.call("GET", f"/user/{other.name}/api/contents/notebooks", learner.token),
        "kernels": hub.call("GET", f"/user/{other.name}/api/kernels", learner.token),
    }
    for what, reply in tries.items():
        if reply.status_code in (403, 404):
            learner.isolation.append(f"{what} {reply.status_code}")
        else:
            learner.errors.append(f"{what} of {other.name} answered {reply.status_code}")
    if not isolated_uids:
        learner.notes.append("same Unix user as the others: files not isolated in kernels")
        return
    kernel = Kernel(hub, learner, TOUR)
    try:
        _, seen = kernel.execute(PEEK.format(other=other.name), hub.timeout)
    finally:
        kernel.close()
    if seen.strip() == "DENIED":
        learner.isolation.append("home denied")
    else:
        learner.errors.append(f"{other.name}'s home from a kernel: {seen.strip()}")


def restart_keeps_work(hub: Hub, learner: Learner, args: argparse.Namespace) -> None:
    base = f"/user/{learner.name}/api/contents/notebooks"
    mine = {"type": "file", "format": "text", "content": "my notes\n"}
    if hub.call("PUT", f"{base}/my_notes.txt", learner.token, json=mine).status_code not in (
            200, 201):
        raise Failed("could not save a file in the home")
    lesson = lesson_path(hub, learner, args.lesson)
    if hub.call("DELETE", f"/user/{learner.name}/api/contents/{lesson}",
                learner.token).status_code != 204:
        raise Failed(f"could not delete {lesson}")
    hub.stop_server(learner, args.spawn_budget)
    hub.start_server(learner, args.spawn_budget)
    kept = hub.call("GET", f"{base}/my_notes.txt", learner.token, params={"content": "1"})
    back = hub.call("GET", f"/user/{learner.name}/api/contents/{lesson}", learner.token)
    if kept.status_code != 200 or kept.json().get("content") != "my notes\n":
        learner.errors.append(f"a saved file did not survive a restart ({kept.status_code})")
    if back.status_code != 200:
        learner.errors.append(f"a deleted lesson did not come back ({back.status_code})")
    if not learner.errors:
        learner.notes.append("restart: work kept, deleted lesson back")


def wrong_password_refused(hub: Hub, name: str, password: str) -> list[str]:
    problems = []
    wrong = password + "x"
    try:
        hub.login_form(name, wrong)
        problems.append("the login form accepted a wrong password")
    except Failed:
        pass
    hub.login_form(name, password)  # the user exists: the API must refuse on the password alone
    if (status := hub.token(name, wrong).status_code) != 403:
        problems.append(f"the token API answered {status} to a wrong password, not 403")
    return problems


def culler_running(hub: Hub, instructor: str, admin_password: str) -> list[str]:
    reply = hub.token(instructor, admin_password)
    if reply.status_code != 201:
        return [f"the instructor could not log in (HTTP {reply.status_code})"]
    services = hub.call("GET", "/hub/api/services", reply.json()["token"]).json()
    culler = services.get("idle-culler", {})
    if not culler.get("pid"):
        return ["the idle-culler service is not running"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the hub, e.g. http://127.0.0.1:8000")
    parser.add_argument("--password", required=True, help="the workshop password")
    parser.add_argument("--admin-password", default="", help="the instructor's password")
    parser.add_argument("--instructor", default="instructor")
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--lesson", default="04", help="lesson number run after the tour")
    parser.add_argument("--prefix", default="learner-", help="learners' names: PREFIX1, ...")
    parser.add_argument("--spawn-budget", type=float, default=360.0)
    parser.add_argument("--cell-budget", type=float, default=120.0)
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.users < 1:
        parser.error(f"--users must be 1 or more, not {args.users}")

    hub = Hub(args.url, timeout=60)
    started = time.perf_counter()
    learners = [Learner(f"{args.prefix}{i}", args.password) for i in range(1, args.users + 1)]

    def one(learner: Learner) -> None:
        try:
            work(hub, learner, args.lesson, args)
        except Failed as error:
            learner.errors.append(str(error))
        except Exception as error:  # report it as this learner's failure, keep the others
            learner.errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=one, args=(lr,)) for lr in learners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    isolated = bool(learners[0].uid) and len({lr.uid for lr in learners}) == len(learners)
    for i, learner in enumerate(learners):
        if learner.token and len(learners) > 1:
            try:
                probe_isolation(hub, learner, learners[(i + 1) % len(learners)], isolated)
            except Exception as error:
                learner.errors.append(f"isolation probe: {type(error).__name__}: {error}")
    if learners[0].token and not learners[0].errors:
        try:
            restart_keeps_work(hub, learners[0], args)
        except Exception as error:
            learners[0].errors.append(f"restart: {type(error).__name__}: {error}")
    general = wrong_password_refused(hub, learners[0].name, args.password)
    if args.admin_password:
        general += culler_running(hub, args.instructor, args.admin_password)
    for learner in learners:
        if learner.token:
            try:
                hub.stop_server(learner, args.spawn_budget)
            except Exception as error:
                learner.errors.append(f"stop: {error}")
    wall = time.perf_counter() - started

    for learner in learners:
        print(learner.line())
    ok = [lr for lr in learners if not lr.errors]
    spawns = [lr.spawn for lr in learners if lr.spawn]
    runs = [lr.run for lr in learners if lr.run]
    peaks = [lr.group_peak_mb or lr.kernel_peak_mb for lr in learners]
    print(f"summary: {len(ok)}/{len(learners)} learners ok; spawn median "
          f"{statistics.median(spawns or [0]):.1f}s max {max(spawns or [0]):.1f}s; run median "
          f"{statistics.median(runs or [0]):.1f}s max {max(runs or [0]):.1f}s; peak memory max "
          f"{max(peaks):.0f} MB; cpu total {sum(lr.cpu for lr in learners):.1f}s; "
          f"wall {wall:.1f}s")
    print("wrong password: " + ("refused (login form and REST API)" if not any(
        "password" in p for p in general) else "; ".join(general)))
    if args.admin_password:
        print("idle culler: " + ("running" if not any("culler" in p for p in general)
                                 else "NOT running"))
    print("isolation: " + ("each learner has their own Unix uid; homes private" if isolated
                           else "servers share one Unix user: hub API isolation only"))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"wall": wall, "learners": [
                {k: v for k, v in vars(lr).items() if k not in ("token", "password")}
                for lr in learners], "general": general}, out, indent=1)
    failed = len(ok) != len(learners) or bool(general)
    print("PREFLIGHT " + ("FAILED" if failed else "PASSED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
