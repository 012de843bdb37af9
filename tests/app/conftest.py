"""Fixtures for the app tests: a small saved model to use as a source, and the served app."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import SMALL_CONFIG


@pytest.fixture(scope="session")
def small_source(tmp_path_factory) -> str:
    """A 2048 x 64 model (hierarchy, ME, copula) saved as a folder: a fast `source`."""
    from synthviz.config import ModelConfig
    from synthviz.model import build_model

    model = build_model(ModelConfig.from_dict(copy.deepcopy(SMALL_CONFIG)), device="cpu")
    folder = tmp_path_factory.mktemp("app_small") / "small"
    model.save(folder)
    return str(folder)


# ---------------------------------------------------------------------------- the served app

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def export_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def served_app(export_root):
    """`python -m panel serve app` on a free port; yields (url, process)."""
    port = _free_port()
    env = {**os.environ, "SYNTHVIZ_EXPORT_ROOT": str(export_root), "PYTHONUNBUFFERED": "1"}
    log = open(export_root.parent / f"panel-serve-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", "app", "--address", "127.0.0.1", "--port",
         str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log.name  # tests read the server log for warnings
    url = f"http://127.0.0.1:{port}/app"
    deadline = time.monotonic() + 300  # a loaded machine imports slowly
    while True:
        try:
            with urllib.request.urlopen(url, timeout=120) as r:  # one session, not a pile-up
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError(f"panel serve did not start; see {log.name}")
        time.sleep(0.5)
    yield url, proc
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
