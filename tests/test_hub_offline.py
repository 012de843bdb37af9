"""Issue 2: Hub loading goes through huggingface_hub's cache and works offline when cached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_hf_cache(cache: Path, repo_id: str, files_from: Path, subfolder: str | None) -> None:
    """Lay files out exactly as huggingface_hub's cache does (snapshots/<commit>/..., refs/main)."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / COMMIT
    dest = snap / subfolder if subfolder else snap
    dest.mkdir(parents=True)
    for f in files_from.iterdir():
        shutil.copy(f, dest / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)


def run_load(source: str, env_extra: dict) -> subprocess.CompletedProcess:
    code = ("import synthviz, sys\n"
            "m = synthviz.load(sys.argv[1], device='cpu')\n"
            "print(m.num_features, m.hidden_dim, m.forest is not None, m.provenance.source)\n")
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code, source], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("subfolder", [None, "variants/std-0"])
def test_loads_offline_from_a_populated_cache(sae_lens_small, tmp_path, subfolder):
    _, folder = sae_lens_small
    cache = tmp_path / "hub"
    populate_hf_cache(cache, "someone/synth-models", Path(folder), subfolder)
    source = "someone/synth-models" + (f":{subfolder}" if subfolder else "")
    res = run_load(source, {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[:3] == ["2048", "64", "True"]


def test_loads_from_cache_without_network_when_not_offline(sae_lens_small, tmp_path):
    # no HF_HUB_OFFLINE: the cache is consulted first, so no network round trip is needed
    _, folder = sae_lens_small
    cache = tmp_path / "hub"
    populate_hf_cache(cache, "someone/cached", Path(folder), None)
    res = run_load("someone/cached", {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"})
    assert res.returncode == 0, res.stderr


def test_offline_not_cached_names_repo_and_path(tmp_path):
    res = subprocess.run([sys.executable, "-m", "synthviz.cli", "stats", "someone/missing:sub/dir",
                          "--samples", "10"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("synthviz: error:")
    assert "someone/missing" in line and "sub/dir" in line and "cache" in line


TIMED_LOAD = ("import json, sys, time\n"
              "import synthviz.io as sio\n"
              "import huggingface_hub.file_download\n"  # imported before the clock starts
              "t = time.perf_counter()\n"
              "try:\n"
              "    sio.load_hub(sys.argv[1], device='cpu')\n"
              "    err = None\n"
              "except Exception as exc:\n"
              "    err = f'{type(exc).__name__}: {exc}'\n"
              "print(json.dumps({'s': time.perf_counter() - t, 'err': err}))\n")


def _timed_load(source: str, env_extra: dict) -> dict:
    import json
    try:
        res = subprocess.run([sys.executable, "-c", TIMED_LOAD, source], capture_output=True,
                             text=True, timeout=90, env={**os.environ, **env_extra})
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {source} with {env_extra} gave no answer in 90 s")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def _hub_resolves() -> bool:
    import socket
    try:
        socket.getaddrinfo("huggingface.co", 443)
        return True
    except OSError:
        return False


def test_unreachable_hub_fails_within_seconds(tmp_path):
    """Issue 11: an uncached Hub id took 23 s of huggingface_hub's retries to fail offline."""
    import socket

    # a Hub whose connections hang: a listener whose one-slot backlog is already full
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filler = socket.create_connection(hole.getsockname())
    base = {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_DISABLE_TELEMETRY": "1"}
    cases = {"HF_HUB_OFFLINE=1": {"HF_HUB_OFFLINE": "1"},
             "connections hang": {"HF_HUB_OFFLINE": "0",
                                  "HF_ENDPOINT": "http://%s:%d" % hole.getsockname()}}
    if not _hub_resolves():  # no network at all (as on an offline machine)
        cases["no network"] = {"HF_HUB_OFFLINE": "0"}
    try:
        for label, env in cases.items():
            got = _timed_load("someone/missing:sub/dir", {**base, **env})
            assert got["err"] and got["err"].startswith("HubError"), (label, got)
            assert "someone/missing" in got["err"] and "sub/dir" in got["err"], (label, got)
            assert "cache" in got["err"], (label, got)
            assert got["s"] < 3.0, (label, got)
    finally:
        filler.close()
        hole.close()
