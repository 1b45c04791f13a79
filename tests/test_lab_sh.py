"""scripts/lab.sh, as a new learner without a browser meets it: it must print the tour's address.

JupyterLab's own log prints the Launcher's address; lab.sh waits for the server and prints the
tour's, token included. The test starts it with ``--no-browser`` on a free port, follows the
printed address the way a browser would (the notebook named in it must exist on the server,
with the same token), then stops it with Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(900)  # a first run makes .venv
def test_lab_sh_prints_the_address_of_the_tour_itself():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    lab = subprocess.Popen(["bash", str(ROOT / "scripts" / "lab.sh"), "--no-browser", "--port",
                            str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    printed: list[str] = []
    url = ""
    try:
        assert lab.stdout is not None
        deadline = time.monotonic() + 840
        while time.monotonic() < deadline and not url:
            line = lab.stdout.readline()
            if not line:
                break
            printed.append(line)
            found = re.search(r"http://127\.0\.0\.1:\d+/lab/tree/\S+", line)
            if found and "00_tour" in found.group(0):
                url = found.group(0)
        assert url, "lab.sh printed no address of the tour:\n" + "".join(printed[-40:])
        parts = urlparse(url)
        assert parts.port == port
        token = parse_qs(parts.query)["token"][0]
        notebook = parts.path.removeprefix("/lab/tree/")
        reply = requests.get(f"http://127.0.0.1:{port}/api/contents/{notebook}",
                             params={"token": token, "content": "0"}, timeout=30)
        assert reply.status_code == 200, (url, reply.status_code)
        assert reply.json()["name"] == "00_tour.ipynb"
        wrong = requests.get(f"http://127.0.0.1:{port}/api/contents/{notebook}",
                             params={"token": "not-the-token"}, timeout=30)
        assert wrong.status_code == 403  # the printed token is the server's, not any token
    finally:
        lab.send_signal(signal.SIGINT)  # Ctrl-C, as the learner does
        try:
            lab.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)
            lab.wait()
        if lab.stdout is not None:
            lab.stdout.close()
