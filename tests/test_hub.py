"""The workshop hub (scripts/hub.sh, deploy/jupyterhub/), run as an instructor runs it.

The preflight (``bash scripts/hub.sh --check --users 3``) starts a real JupyterHub with its
proxy, logs three learners in through the hub's login form and REST API, starts their servers
and runs the tour and lesson 04 in each through the kernel's websocket; it also tries a wrong
password and lets every learner try the next one's server and files. It is run once for this
module and each test reads its part of the report. The first run makes the hub's environment
(.venv-hub, from PyPI, and configurable-http-proxy from npm): marked slow.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HUB = ROOT / "scripts" / "hub.sh"
USERS = 3

pytestmark = pytest.mark.slow


def hub_sh(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    return subprocess.run(["bash", str(HUB), *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def preflight() -> subprocess.CompletedProcess[str]:
    return hub_sh("--check", "--users", str(USERS), timeout=1200)


def learner_lines(report: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r"^(learner-\d+) .*$", report, re.M)}


@pytest.mark.timeout(1300)
def test_the_preflight_passes_for_three_learners(preflight):
    report = preflight.stdout
    assert preflight.returncode == 0, report + preflight.stderr[-4000:]
    lines = learner_lines(report)
    assert sorted(lines) == [f"learner-{i}" for i in range(1, USERS + 1)], report
    for name, line in lines.items():
        spawn, run = (float(x) for x in re.search(r"spawn +([\d.]+)s +run +([\d.]+)s",
                                                   line).groups())
        assert spawn > 0 and run > 0, line
        # the tour and lesson 04 both ran, and the lesson opened its panels' widgets
        assert re.search(r"\(00 [\d.]+s, 04 [\d.]+s\)", line), line
        assert int(re.search(r"widgets (\d+)", line).group(1)) > 0, line
        assert int(re.search(r"kernel peak (\d+) MB", line).group(1)) > 20, line
        assert line.endswith("ok") or "ok  [" in line, f"{name}: {line}"
    assert "restart: work kept, deleted lesson back" in lines["learner-1"]
    assert re.search(rf"^summary: {USERS}/{USERS} learners ok", report, re.M), report
    assert "idle culler: running" in report
    assert report.rstrip().endswith("PREFLIGHT PASSED") or "PREFLIGHT PASSED" in report


@pytest.mark.timeout(1300)
def test_a_wrong_password_is_refused(preflight):
    assert "wrong password: refused (login form and REST API)" in preflight.stdout, \
        preflight.stdout


@pytest.mark.timeout(1300)
def test_a_learner_cannot_reach_another_learners_server_or_files(preflight):
    for name, line in learner_lines(preflight.stdout).items():
        found = dict(re.findall(r"(hub-api|start|files|kernels) (\d{3})", line))
        assert set(found) == {"hub-api", "start", "files", "kernels"}, line
        assert all(code in ("403", "404") for code in found.values()), f"{name}: {line}"
        if os.geteuid() == 0 and "each learner has their own Unix uid" in preflight.stdout:
            assert "home denied" in line, line


@pytest.mark.timeout(1300)
def test_the_preflight_leaves_nothing_running(preflight):
    psutil = pytest.importorskip("psutil")
    assert "stopping the hub" in preflight.stdout + preflight.stderr
    left = []
    for proc in psutil.process_iter(["pid", "name"]):
        try:
            marker = proc.environ().get("DURABLE_LAB_HUB", "")
        except (psutil.Error, OSError):
            continue
        if "durable_lab-hub-check" in marker:
            left.append(f"{proc.info['pid']} {proc.info['name']}")
    assert not left, f"processes of the preflight's hub still running: {left}"


def test_a_second_hub_on_a_busy_port_says_so(tmp_path):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]  # an ephemeral port: below 61000 on Linux
        result = hub_sh("--port", str(port), "--dir", str(tmp_path / "room"), timeout=900)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port} is busy" in result.stderr
    assert "--port" in result.stderr  # says how to go on
    assert not (tmp_path / "room" / "hub" / "jupyterhub.sqlite").exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--users", "0"], "--users must be 1 or more"),
    (["--lesson", "4"], "--lesson must be two digits"),
    (["--password", "short"], "at least 8 characters"),
    (["--colour", "red"], "unknown argument '--colour'"),
])
def test_bad_arguments_get_a_clear_error(args, says):
    result = hub_sh(*args, timeout=60)
    assert result.returncode == 2
    assert says in result.stderr, result.stderr


def test_the_kubernetes_values_match_the_room_hub():
    """deploy/kubernetes/config.yaml (Zero to JupyterHub) makes the same choices as the room's
    hub: the login, the landing page, the idle timeout, the limits per learner."""
    yaml = pytest.importorskip("yaml")
    values = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "config.yaml").read_text())
    room = (ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py").read_text()
    script = HUB.read_text()

    def room_setting(pattern: str, text: str = room) -> str:
        found = re.search(pattern, text)
        assert found, f"{pattern!r} not in the room's configuration"
        return found.group(1)

    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == room_setting(
        r'authenticator_class = "([^"]+)"')
    assert values["singleuser"]["defaultUrl"] == room_setting(r'default_url = "([^"]+)"')
    assert values["cull"]["enabled"] is True
    assert str(values["cull"]["timeout"]) == room_setting(r'cull="(\d+)"', script)
    assert values["singleuser"]["memory"]["limit"] == room_setting(r'mem="([^"]+)"', script)
    assert str(values["singleuser"]["cpu"]["limit"]) == room_setting(r'cpu="([^"]+)"', script)
    assert values["hub"]["config"]["Authenticator"]["username_pattern"] == room_setting(
        r'username_pattern = r"([^"]+)"')
    hook = " ".join(values["singleuser"]["lifecycleHooks"]["postStart"]["exec"]["command"])
    assert "notebooks/*.ipynb" in hook and "[ -e" in hook, "copy lessons, keep learners' edits"
    assert "SharedPasswordAuthenticator" not in values["hub"]["config"], \
        "passwords are set at install time (--set), never in a committed file"
