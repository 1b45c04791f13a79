"""One harness for every browser test: a Jupyter server, headless Chromium, what the page logged.

Every browser test needs the same scaffolding, and a copy that drifts hides bugs (the four tests
used to start JupyterLab with ``BOKEH_RESOURCES=inline``, which no learner does, so blank plots
offline went unnoticed). This module owns it:

- :class:`JupyterServer`: ``jupyter lab`` (or Notebook 7) on a free local port, a random token,
  throw-away settings and workspace folders, this checkout first on ``PYTHONPATH``, and
  ``BOKEH_RESOURCES`` *removed* from its environment (a developer's shell must not hide an
  offline bug). Stopped by its REST shutdown, then by PID.
- :class:`BrowserSession`: the server plus Playwright's Chromium (Debian's ``/usr/bin/chromium``;
  never ``playwright install``). Every page it opens (:meth:`BrowserSession.new_page`)
  records console errors and uncaught page errors, tagged with the test's current *phase*, and
  **blocks every request whose host is not this machine**, recording the URLs it blocked: the
  panels must render with no network, as in a workshop room without internet.
- On an exception inside the session: a screenshot of every open page, the report as JSON, and
  the server log's tail, written to the shots folder as ``99-<name>-failure.*``.
- Small page helpers shared by the tests: waiting for the kernel, *Run All*, reading
  ``data-*`` attributes.

**Wait for a condition, never sample.** A test that looks at the page for a few seconds and
then judges what it saw fails whenever the machine is busy (the lesson-07 test failed 3 of 3
on a fresh clone that way: the change came after its window). Every page this harness opens
carries a recorder (:data:`RECORDER_JS`, a ``MutationObserver`` installed before JupyterLab
loads) that keeps, per panel element class (``dl-objectview``, ``dl-runstate``, ...) and per
``data-*`` attribute, every distinct value the page showed, in order, however briefly. Then:

- :func:`wait_js` ``(page, js, arg, timeout=, what=)``: wait until a JS predicate is truthy
  (``page.wait_for_function`` with a deadline); on timeout an ``AssertionError`` that says
  ``what`` was awaited and what the page held then. Returns the predicate's value.
- :func:`wait_seen` ``(page, key, name, pred_js, timeout=, what=)``: wait until the recorded
  values of ``[data-<name>]`` on ``.dl-<key>`` satisfy ``pred_js`` (a JS function of the list
  of values, oldest first), e.g. ``"v => v.includes('closed')"``; returns that list.
- :func:`seen` ``(page)``: everything recorded so far (``{key: {attr: [values]}}``);
  :func:`reset_seen` forgets it (before a new phase of a test).
- :func:`wait_attr` ``(page, selector, name, pred)``: wait until the *current* value of an
  attribute satisfies a Python predicate (a deadline; a poll in Python).
- :func:`wait_count` ``(locator, at_least)``: wait until a locator matches that many elements
  (Bokeh canvases are in shadow roots: a Playwright locator sees them).
- :func:`wait_text` ``(locator, text)``: wait until it shows that text.
- :func:`shoot` ``(page, locator, path)``: a screenshot of a live panel as it is now (not
  ``locator.screenshot()``, which waits for the panel to stop moving).
- :func:`click_until` ``(page, locator, js)``: click an idempotent button (*Pause*, *Play*)
  until the predicate holds (a click lost while a busy page re-lays itself out is repeated).
- :func:`wait_all_cells_ran`: every code cell ran and the kernel is idle.
- :data:`TIMEOUT_SCALE` (``BROWSER_TIMEOUT_SCALE``, default 1): every deadline above is
  multiplied by it, for a machine that is slower still. The defaults are generous (a minute
  or two): a deadline only bounds how long a failure takes to show; a pass never waits for it.
  They were chosen on this 2-core machine with both cores kept busy and a load average of 20.

A check that something does *not* happen (the step counter stays put while paused) still has to
watch for a while; that is the only kind of sampling left, and it says so where it is done.

Screenshots go to ``build/screenshots`` unless ``SHOTS_DIR`` says otherwise;
``SHOTS_DIR=docs/img`` refreshes the committed ones (lessons: ``docs/img/lessons``).

Recipe and pitfalls: /work/shared/reference/browser-testing.md (kernel idle detection, stream
echo, BokehJS loading).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
import urllib.request
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ROOT = pathlib.Path(__file__).resolve().parents[2]

# --no-sandbox: CI and this machine run as root. The networking flags stop Chromium phoning home
# on its own (component updates, sync): those are not the page's requests.
CHROME_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The kernel is ready when JupyterLab's status bar reads "... | Idle" and not "No Kernel ...":
# the toolbar's execution indicator says idle before any kernel exists (recipe, pitfall 5).
KERNEL_IDLE_JS = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .map(e => e.textContent.trim())
    .some(t => /\\| Idle$/.test(t) && !t.startsWith('No Kernel'))"""

STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
ERROR_OUTPUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
# What jupyter_bokeh / BokehJS show in place of a plot whose view could not be made.
JS_ERROR_BOX_TEXT = "Click to show javascript error"

#: Multiplies every deadline of the wait helpers (``BROWSER_TIMEOUT_SCALE``; 1 by default).
TIMEOUT_SCALE = float(os.environ.get("BROWSER_TIMEOUT_SCALE", "1") or 1)

# Installed in every page before JupyterLab loads (BrowserSession.new_page): records every
# distinct value each panel's data-* attributes take, per element class starting with "dl-"
# ("dl-objectview") and attribute ("data-gate"), in order, however briefly shown (a panel's
# HTML widget replaces its element on every redraw: added nodes are scanned too). The lists stop
# at 5,000 values. Read with seen() / wait_seen(). Another recorder installed after this one
# (test_lessons_browser.py has its own) takes window.__dlSeen over; both keep the same shape.
RECORDER_JS = r"""
(() => {
  const seen = {};
  window.__dlSeen = seen;
  window.__dlSeenReset = () => {
    for (const k of Object.keys(window.__dlSeen)) delete window.__dlSeen[k];
  };
  const LIMIT = 5000;
  function keyOf(el) {
    for (const c of el.classList) if (c.startsWith("dl-")) return c;
    return null;  // not a panel's element (JupyterLab's own data-status, ...)
  }
  function note(el, name) {
    if (!name || !name.startsWith("data-")) return;
    const value = el.getAttribute(name);
    const key = keyOf(el);
    if (value === null || key === null) return;
    const per = (window.__dlSeen[key] ??= {});
    const list = (per[name] ??= []);
    if (list.length < LIMIT && list[list.length - 1] !== value) list.push(value);
  }
  function noteAll(el) {
    for (const a of el.getAttributeNames()) note(el, a);
  }
  function scan(node) {
    if (node.nodeType !== 1) return;
    if (node.className && String(node.className).includes("dl-")) noteAll(node);
    for (const sub of node.querySelectorAll("[class*='dl-']")) noteAll(sub);
  }
  const observer = new MutationObserver(records => {
    for (const r of records) {
      if (r.type === "attributes") note(r.target, r.attributeName);
      else for (const n of r.addedNodes) scan(n);
    }
  });
  observer.observe(document, {subtree: true, childList: true, attributes: true});
})();
"""

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Matched inside Playwright's driver, so local requests (hundreds of JupyterLab chunks) never
# make the round trip to Python: only URLs with another host reach the handler, which aborts
# them. data:/blob: URLs are not network requests and never match.
_NOT_LOCAL = re.compile(r"^(?!(?:https?|wss?)://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d+)?/)"
                        r"(?!data:|blob:)")


def browser_marks(*extra: Any) -> list[Any]:
    """The ``pytestmark`` of a browser test: marked ``browser``, retried, skipped without Chromium.

    A real browser against a real Jupyter server has timing noise no fake clock can remove; a
    failure is retried twice before it counts (the runtime's own tests never retry).
    ``BROWSER_RERUNS=0`` turns the retries off while you iterate on a failing test.
    """
    return [
        pytest.mark.browser,
        # pyproject's 300 s per test is for the runtime's tests; a JupyterLab session on a
        # loaded 2-core machine (issue 17: both cores kept busy) can take longer and still pass
        pytest.mark.timeout(int(900 * TIMEOUT_SCALE)),
        pytest.mark.flaky(reruns=int(os.environ.get("BROWSER_RERUNS", "2")), reruns_delay=2),
        pytest.mark.skipif(
            not os.path.exists(CHROMIUM),
            reason=f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"),
        *extra,
    ]


def shots_dir(sub: str = "") -> pathlib.Path:
    """Where screenshots go: ``$SHOTS_DIR`` (``docs/img`` refreshes the docs) or
    ``build/screenshots``."""
    base = pathlib.Path(os.environ.get("SHOTS_DIR", ROOT / "build" / "screenshots"))
    if not base.is_absolute():
        base = ROOT / base
    path = base / sub if sub else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(runtime_dir: pathlib.Path) -> dict[str, str]:
    """The server's (and so its kernels') environment: this checkout importable first, and no
    ``BOKEH_RESOURCES``: a learner's Jupyter has none, so the panels must load BokehJS offline
    by themselves."""
    env = {k: v for k, v in os.environ.items() if k != "BOKEH_RESOURCES"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", ""))
                                        if p)
    env["JUPYTER_RUNTIME_DIR"] = str(runtime_dir)
    return env


class JupyterServer:
    """``jupyter lab`` (or ``app="notebook"``: Notebook 7) in the background, serving ``root``."""

    def __init__(self, root: pathlib.Path, log_path: pathlib.Path,
                 app: str = "jupyterlab") -> None:
        self.port, self.token, self.app = _free_port(), secrets.token_hex(16), app
        self.log_path = log_path
        cfg = root / ".lab-state"
        # No news toast over the screenshots.
        news = cfg / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
        app_class = {"jupyterlab": "LabApp", "notebook": "JupyterNotebookApp"}[app]
        cmd = [sys.executable, "-m", app, "--no-browser", f"--port={self.port}",
               "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0",
               "--ServerApp.allow_root=True", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}",
               f"--{app_class}.workspaces_dir={cfg / 'workspaces'}",
               f"--{app_class}.user_settings_dir={cfg / 'settings'}"]
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=root, env=server_env(cfg / "runtime"),
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{app} exited with {self.proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(self.api("status"), timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{app} did not start in 90 s")
            time.sleep(0.2)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """``path`` (``lab/tree/x.ipynb``) on this server, with the token."""
        return f"{self.base}/{path.lstrip('/')}?token={self.token}"

    def api(self, path: str) -> str:
        return self.url(f"api/{path}")

    def request(self, method: str, path: str) -> Any:
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict[str, Any]]:
        return self.request("GET", "kernels")

    def shutdown_kernels(self) -> int:
        """Shut every running kernel down (between two notebooks on the same server)."""
        kernels = self.kernels()
        for k in kernels:
            self.request("DELETE", f"kernels/{k['id']}")
        return len(kernels)

    def log_text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("POST", "shutdown")
                self.proc.wait(timeout=20)
            except Exception:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if not self.log.closed:
            self.log.close()


class BrowserSession:
    """A Jupyter server on a throw-away folder plus headless Chromium; a context manager.

    ``files`` maps a file name to an nbformat notebook, a path to copy, or text. The report
    (``session.report``) collects ``console_errors`` and ``blocked_requests`` (both tagged with
    ``session.phase``), plus whatever the test adds; on an exception the pages are screenshot
    and the report written to the shots folder before the exception goes on.
    """

    def __init__(self, name: str, files: dict[str, Any], *, shots: pathlib.Path | None = None,
                 app: str = "jupyterlab") -> None:
        self.name, self.files, self.app = name, files, app
        self.shots = shots if shots is not None else shots_dir()
        self.phase = "load"
        self.report: dict[str, Any] = {"console_errors": [], "blocked_requests": [],
                                       "timings_s": {}}
        self.pages: list[Any] = []
        self.root: pathlib.Path | None = None
        self.server: JupyterServer | None = None
        self._pw: Any = None
        self.browser: Any = None
        self.context: Any = None

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> BrowserSession:
        import nbformat
        from playwright.sync_api import sync_playwright

        self.root = pathlib.Path(tempfile.mkdtemp(prefix=f"dl-{self.name}-"))
        for fname, content in self.files.items():
            target = self.root / fname
            if isinstance(content, pathlib.Path):
                shutil.copy(content, target)
            elif isinstance(content, str):
                target.write_text(content)
            else:
                nbformat.write(content, target)
        try:
            self.server = JupyterServer(self.root, self.root / f"{self.app}.log", app=self.app)
            self._pw = sync_playwright().start()
            self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                    args=CHROME_ARGS)
            self.context = self.browser.new_context(viewport={"width": 1500, "height": 2500})
            # Playwright's own 30 s per action (a click, a locator's wait) is too short for a
            # page whose main thread a live dashboard keeps busy on a loaded 2-core machine: a
            # click on Pause timed out "done scrolling" there. A deadline bounds a failure only.
            self.context.set_default_timeout(120_000 * TIMEOUT_SCALE)
            self.context.route(_NOT_LOCAL, self._block)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.save_failure(exc)
        self._close()

    def _close(self) -> None:
        try:
            if self.browser is not None:
                self.browser.close()
            if self._pw is not None:
                self._pw.stop()
        finally:
            if self.server is not None:
                self.server.stop()
                self.report["server_log_tail"] = self.server.log_text()[-3000:]
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)

    def save_failure(self, exc: BaseException | None = None, tag: str = "") -> None:
        """Screenshots of every open page and the report, as ``99-<name>[-tag]-failure.*``."""
        stem = f"99-{self.name}{'-' + tag if tag else ''}-failure"
        if exc is not None:
            self.report["exception"] = "".join(traceback.format_exception(exc))[-4000:]
        for i, page in enumerate(self.pages):
            if page.is_closed():
                continue
            try:
                page.screenshot(path=self.shots / f"{stem}{'-' + str(i) if i else ''}.png")
            except Exception as shot_error:  # the page may be what failed; keep the report
                self.report.setdefault("screenshot_errors", []).append(repr(shot_error))
        if self.server is not None:
            self.report["server_log_tail"] = self.server.log_text()[-3000:]
        (self.shots / f"{stem}-report.json").write_text(json.dumps(self.report, indent=2,
                                                                   default=str))

    # -- pages ------------------------------------------------------------------------------

    def _block(self, route: Any) -> None:
        url = route.request.url
        host = urllib.parse.urlsplit(url).hostname or ""
        if host in LOCAL_HOSTS:  # the pattern should not have sent it here; let it through
            route.continue_()
            return
        self.report["blocked_requests"].append(f"[{self.phase}] {url}")
        route.abort("internetdisconnected")

    def new_page(self, *, viewport: dict[str, int] | None = None) -> Any:
        """A page in this session's context: console errors and page errors recorded."""
        page = self.context.new_page()
        if viewport is not None:
            page.set_viewport_size(viewport)
        errors = self.report["console_errors"]
        page.on("console", lambda m: m.type == "error" and errors.append(
            f"[{self.phase}] {m.text}"))
        page.on("pageerror", lambda e: errors.append(
            f"[{self.phase}] pageerror: {e} {(e.stack or '')[:3000]}"))
        page.add_init_script("Error.stackTraceLimit = 40;")  # whole stacks in the report
        page.add_init_script(RECORDER_JS)  # every value a panel's data-* showed (wait_seen)
        self.pages.append(page)
        return page

    def open_notebook(self, page: Any, name: str, *, wait_kernel: bool = True,
                      workspace: str | None = None) -> None:
        """Open ``name`` in JupyterLab (``/lab/tree``) and wait until its kernel is idle.

        ``workspace``: open it in that (new) JupyterLab workspace, so the tabs an earlier page
        of this session had open are not restored (each would start its kernel again)."""
        t0 = time.monotonic()
        prefix = "lab/tree" if self.app == "jupyterlab" else "notebooks"
        if workspace is not None and self.app == "jupyterlab":
            prefix = f"lab/workspaces/{workspace}/tree"
        page.goto(self.server.url(f"{prefix}/{name}"))
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000 * TIMEOUT_SCALE)
        if wait_kernel and self.app == "jupyterlab":
            wait_kernel_idle(page)
        self.report["timings_s"][f"open {name}"] = round(time.monotonic() - t0, 1)


# -- page helpers ----------------------------------------------------------------------------


def wait_kernel_idle(page: Any, timeout: float = 120.0) -> None:
    page.wait_for_function(KERNEL_IDLE_JS, timeout=timeout * TIMEOUT_SCALE * 1000, polling=100)


def menu(page: Any, top: str, item: str) -> None:
    """Click ``top`` in the menu bar, then the item whose label is exactly ``item``."""
    page.locator(f".lm-MenuBar-itemLabel:text-is('{top}')").click()
    page.locator(f".lm-Menu-itemLabel:text-is('{item}')").click()


def run_all(page: Any) -> None:
    """Run > Run All Cells, and fail within 10 s if nothing started (recipe, pitfall 5)."""
    from playwright.sync_api import expect

    menu(page, "Run", "Run All Cells")
    expect(page.locator(".jp-CodeCell .jp-InputPrompt").first).not_to_have_text(
        "[ ]:", timeout=30_000 * TIMEOUT_SCALE)


def hide_left_sidebar(page: Any) -> None:
    """View > Show Left Sidebar off: the notebook (and its panels) get the whole width."""
    page.locator(".lm-MenuBar-itemLabel:text-is('View')").click()
    toggle = page.locator(".lm-Menu-itemLabel", has_text="Left Sidebar")
    if toggle.count():
        toggle.first.click()
    else:
        page.keyboard.press("Escape")


def wait_all_cells_ran(page: Any, timeout: float = 120.0, tick: Any = None,
                       settle: float = 5.0) -> list[str]:
    """Wait until every code cell has run and the kernel is idle; returns the prompts.

    Done when no prompt is ``[ ]:`` or ``[*]:`` and the kernel is idle; or when no prompt is
    ``[ ]:`` and the kernel has been idle for ``settle`` seconds in a row: a cell may keep
    ``[*]:`` after it ran (its output shows ``[n]:`` and later cells ran) because JupyterLab
    never matched its ``execute_reply``; seen with ipykernel 7.4, which handles widget
    messages concurrently with an awaiting cell. The kernel runs cells in order and is idle,
    so such a cell did run; callers report these prompts (see :func:`stuck_prompts`). Raises
    if neither happens in ``timeout``. ``tick()``, if given, is called at every poll.
    """
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    prompts: list[str] = []
    idle_since: float | None = None
    while time.monotonic() < deadline:
        # textContent, not innerText: JupyterLab 4.6 skips rendering cells out of the window
        # (windowingMode "contentVisibility"), and their innerText is "" although the prompt
        # is there (the tour test saw its first three prompts empty once it had scrolled down).
        prompts = [p.strip() for p in page.locator(".jp-CodeCell .jp-InputPrompt")
                   .all_text_contents()]
        shown = [p for p in prompts if p]  # a collapsed cell shows no prompt
        idle = bool(page.evaluate(KERNEL_IDLE_JS))
        now = time.monotonic()
        idle_since = (idle_since or now) if idle else None
        if shown and "[ ]:" not in shown:
            if "[*]:" not in shown and idle:
                return prompts
            if idle_since is not None and now - idle_since >= settle:
                return prompts
        if tick is not None:
            tick()
        time.sleep(0.25)
    raise AssertionError(f"cells still not run after {timeout:.0f} s: {prompts}")


def stuck_prompts(prompts: list[str]) -> list[int]:
    """Indices of code cells still showing ``[*]:`` once the kernel settled (see above)."""
    return [i for i, p in enumerate(prompts) if p == "[*]:"]


def log_console_text(page: Any) -> str:
    """The text of JupyterLab's log console for the open notebook (View > Show Log Console),
    where kernel output that belongs to no cell lands (e.g. the kernel's warnings while it
    handles a widget's message). The console is closed again afterwards."""
    menu(page, "View", "Show Log Console")
    panel = page.locator(".jp-LogConsolePanel").first
    panel.wait_for(timeout=30_000 * TIMEOUT_SCALE)
    page.wait_for_timeout(500)  # entries render asynchronously
    text = panel.inner_text()
    menu(page, "View", "Show Log Console")  # a toggle: closes it
    return text


def attr(page: Any, selector: str, name: str) -> str | None:
    """Attribute ``name`` of the first element matching ``selector`` (None if none)."""
    loc = page.locator(selector)
    return loc.first.get_attribute(name) if loc.count() else None


def wait_attr(page: Any, selector: str, name: str, pred: Any, timeout: float = 60.0) -> str:
    """Poll ``attr`` until ``pred(value)``; returns the value."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    value = None
    while time.monotonic() < deadline:
        value = attr(page, selector, name)
        if value is not None and pred(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{selector}[{name}] never matched; last value {value!r}")


def print_report(report: dict[str, Any]) -> None:
    """The report on stdout (pytest -s shows it), without the server log's tail."""
    print(json.dumps({k: v for k, v in report.items() if k != "server_log_tail"}, indent=2,
                     default=str))


def wait_js(page: Any, js: str, arg: Any = None, *, timeout: float = 60.0,
            what: str = "", state_js: str | None = None) -> Any:
    """Wait until the JS function ``js`` (called with ``arg``) returns something truthy; return
    it. Runs in the page (``page.wait_for_function``, polled every 100 ms), so a slow test
    process cannot miss the moment. On timeout: ``AssertionError`` naming ``what`` and, if
    ``state_js`` is given, what that function returned then (the page's state, for the report).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        handle = page.wait_for_function(js, arg=arg, timeout=timeout * TIMEOUT_SCALE * 1000,
                                        polling=100)
        return handle.json_value()
    except PlaywrightTimeout:
        state = None
        if state_js is not None:
            try:
                state = page.evaluate(state_js)
            except Exception as exc:  # the page itself may be what broke
                state = f"(could not read the page: {exc!r})"
        raise AssertionError(f"waited {timeout * TIMEOUT_SCALE:.0f} s for {what or js!r}; "
                             f"the page had {state!r}") from None


def seen(page: Any) -> dict[str, dict[str, list[str]]]:
    """Every value the panels' ``data-*`` attributes showed so far (RECORDER_JS):
    ``{"dl-objectview": {"data-gate": ["open", "closed", ...], ...}, ...}``."""
    return page.evaluate("() => window.__dlSeen || {}")


def reset_seen(page: Any) -> None:
    """Forget what was recorded (the next phase of a test starts from here)."""
    page.evaluate("() => window.__dlSeenReset && window.__dlSeenReset()")


def wait_seen(page: Any, key: str, name: str, pred_js: str, *, timeout: float = 120.0,
              what: str = "") -> list[str]:
    """Wait until the values recorded for ``data-<name>`` on ``.<key>`` (``"dl-objectview"``,
    ``"gate"``), oldest first, satisfy ``pred_js`` (a JS function of that list, e.g.
    ``"v => v.includes('closed')"``); returns the list."""
    name = name if name.startswith("data-") else f"data-{name}"
    js = f"""([key, name]) => {{
        const v = ((window.__dlSeen || {{}})[key] || {{}})[name] || [];
        return ({pred_js})(v) ? v : null;
    }}"""
    return wait_js(page, js, [key, name], timeout=timeout,
                   what=what or f"{key}[{name}] to satisfy {pred_js}",
                   state_js=f"() => ((window.__dlSeen || {{}})[{key!r}] || {{}})[{name!r}]")


def wait_text(locator: Any, text: str, *, timeout: float = 60.0) -> None:
    """Wait until ``locator`` (its first match) shows ``text`` (Playwright's ``expect``)."""
    from playwright.sync_api import expect

    expect(locator.first).to_contain_text(text, timeout=timeout * TIMEOUT_SCALE * 1000)


def wait_count(locator: Any, at_least: int = 1, *, timeout: float = 120.0, what: str = "") -> int:
    """Wait until ``locator`` matches at least ``at_least`` elements (Playwright locators see
    into Bokeh's shadow DOM, ``document.querySelectorAll`` does not); returns the count."""
    deadline = time.monotonic() + timeout * TIMEOUT_SCALE
    n = locator.count()
    while n < at_least:
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout * TIMEOUT_SCALE:.0f} s for {at_least} of "
                                 f"{what or locator}; found {n}")
        time.sleep(0.1)
        n = locator.count()
    return n


def click_until(page: Any, locator: Any, js: str, arg: Any = None, *, timeout: float = 120.0,
                tries: int = 3, what: str = "") -> Any:
    """Click ``locator`` until the JS predicate ``js`` holds (at most ``tries`` clicks, the
    deadline shared among them); returns its value. Only for idempotent buttons (*Pause*,
    *Play*): on a busy machine a click can land while the page re-lays a panel out, and be
    lost (seen once in ~20 runs: the button took focus, the kernel never heard of it)."""
    per_try = timeout / tries
    for attempt in range(1, tries + 1):
        locator.click()
        try:
            return wait_js(page, js, arg, timeout=per_try, what=what)
        except AssertionError:
            if attempt == tries:
                raise
    return None


_SCROLL_TO_TOP_JS = """el => {
  el.scrollIntoView({block: "start"});
  const r = el.getBoundingClientRect();
  return {x: r.x, y: r.y, width: r.width, height: r.height};
}"""


def shoot(page: Any, target: Any, path: Any) -> None:
    """Screenshot ``target`` (a locator: its first match) as it is now, scrolled to the top of
    the notebook and clipped to the window. Not ``locator.screenshot()``: that first waits for
    the element to stop moving, and a live panel on a busy machine does not stop within its
    30 s (a dashboard test failed that way, after all its checks had passed). If JupyterLab
    scrolled while the shot was taken (Run All follows the running cell), it is taken again."""
    size = page.viewport_size
    element = target.first if hasattr(target, "first") else target
    for _ in range(4):
        box = element.evaluate(_SCROLL_TO_TOP_JS)
        top = max(0.0, box["y"])
        clip = {"x": max(0.0, box["x"]), "y": top,
                "width": max(1.0, min(box["width"], size["width"] - max(0.0, box["x"]))),
                "height": max(1.0, min(box["height"], size["height"] - top))}
        page.screenshot(path=path, clip=clip)
        after = element.bounding_box()
        if after is not None and abs(after["y"] - box["y"]) < 2:
            return
