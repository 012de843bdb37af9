"""Issue 12.5: disk caches under concurrency and faults, with real processes on a tiny model.

Two processes that fill the same cache entry at once (held together at the rename that
publishes it) both succeed, warn about nothing, and leave one valid entry; a process killed
with SIGKILL while its entry is half written leaves nothing that a later start trusts: the
later start rebuilds without a "damaged" warning and removes the dead writer's temporary name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KINDS = ["model", "dictionary", "rho"]
WARNINGS = ("could not", "damaged", "ignoring", "Traceback")


def start(kind: str, mode: str, cache: Path, sync: Path) -> subprocess.Popen:
    env = {**os.environ, "SYNTHVIZ_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tests.reliability.cache_child", kind, mode,
                             str(sync)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert not [w for w in WARNINGS if w in err], err
    return json.loads(out.strip().splitlines()[-1])


def entries(cache: Path) -> list[str]:
    """Every name under the cache's models folder, one level into each entry."""
    root = cache / "models"
    names = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        names.append(p.name)
        if p.is_dir():
            names += [f"{p.name}/{q.name}" for q in sorted(p.iterdir())]
    return names


def assert_one_valid_entry(kind: str, cache: Path) -> None:
    names = entries(cache)
    assert not [n for n in names if "tmp" in n], names  # no temporary names left
    top = [n for n in names if "/" not in n]
    assert len(top) == 1, names
    files = {n.split("/")[1] for n in names if "/" in n}
    folder = cache / "models" / top[0]
    if kind == "model":
        import synthviz
        synthviz.load_folder(folder, device="cpu")  # complete and valid
    elif kind == "dictionary":
        from safetensors.torch import load_file
        assert files == {"dictionary.safetensors"}
        assert load_file(str(folder / "dictionary.safetensors"))["feature_vectors"].shape == (300, 24)
    else:
        assert files == {"rho_mm.json"}
        assert 0 < json.loads((folder / "rho_mm.json").read_text())["rho_mm"] < 1


@pytest.mark.parametrize("kind", KINDS)
def test_two_processes_filling_one_entry_both_succeed(kind, tmp_path):
    cache, sync = tmp_path / "cache", tmp_path / "sync"
    sync.mkdir()
    procs = [start(kind, "race", cache, sync) for _ in range(2)]
    a, b = [finish(p) for p in procs]
    assert a["raced"] and b["raced"], "the two processes never met at the rename"
    assert a["digest"] == b["digest"]
    assert_one_valid_entry(kind, cache)


@pytest.mark.parametrize("kind", ["model", "rho"])  # the dictionary is written like a model
def test_sigkill_mid_write_leaves_nothing_trusted(kind, tmp_path):
    cache, sync = tmp_path / "cache", tmp_path / "sync"
    sync.mkdir()
    proc = start(kind, "kill", cache, sync)
    end = time.time() + 120
    while not list(sync.glob("ready-*")) and proc.poll() is None and time.time() < end:
        time.sleep(0.05)
    assert list(sync.glob("ready-*")), proc.communicate(timeout=5)[1] if proc.poll() else "stuck"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert [n for n in entries(cache) if "tmp" in n]  # a half-written entry is left
    later = finish(start(kind, "plain", cache, sync))  # rebuilds; warns about nothing
    if kind == "model":
        assert not str(later["source"]).startswith("cache:"), later
    assert_one_valid_entry(kind, cache)
