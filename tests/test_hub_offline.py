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
            "print(m.num_features, m.hidden_dim, m.forest is not None, m.notes.get('source'))\n")
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
