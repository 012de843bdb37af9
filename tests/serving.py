"""`panel serve` for the browser tests: start a page on a free port, wait until it answers, stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(target: str, name: str, log_path: Path, env: dict[str, str] | None = None,
          args: tuple[str, ...] = (), timeout: float = 300.0) -> tuple[str, subprocess.Popen]:
    """Serve `target` (a path under the repository) and wait for its page `/name`; returns
    (url, process), with the process's `log_path` set (tests read the server log)."""
    port = free_port()
    log = open(log_path, "w")
    cmd = [sys.executable, "-m", "panel", "serve", target, "--address", "127.0.0.1", "--port",
           str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd + (["--args", *args] if args else []), cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
                                 **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = str(log_path)
    url = f"http://127.0.0.1:{port}/{name}"
    deadline = time.monotonic() + timeout  # a loaded machine imports slowly
    while True:
        try:
            with urllib.request.urlopen(url, timeout=120) as r:  # one session, not a pile-up
                if r.status == 200:
                    return url, proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError(f"panel serve did not start; see {log_path}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
