"""Issue 8.2 and 8.4: Hub failures, offline use, no unpickling, no token leaks, local-only serving.

The Hub is replaced by stand-ins (`huggingface_hub.hf_hub_download` patched to raise each of its
errors, and synthviz's reachability check told that the Hub answers), so no test touches the
network. Offline behaviour runs in real subprocesses, because huggingface_hub reads
HF_HUB_OFFLINE and HF_HOME when it is imported.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import synthviz
import synthviz.io as sio
from synthviz.errors import ConfigError, HubError, ModelFileError
from tests.reliability.helpers import (CliResult, assert_cli_error, assert_model_unchanged,
                                       cli_fork, model_snapshot)

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
FAKE_TOKEN = "hf_FAKEtokenDoNotLeak0123456789abcdef"


def hf_error(name: str, msg: str = "stand-in failure"):
    """An instance of huggingface_hub.errors.<name>, whatever HTTP library this version uses."""
    from huggingface_hub import errors

    cls = getattr(errors, name)
    try:
        return cls(msg)
    except TypeError:  # HTTP errors need a response object
        base = next(c for c in cls.__mro__
                    if c.__module__.split(".")[0] not in ("huggingface_hub", "builtins"))
        http = importlib.import_module(base.__module__.split(".")[0])
        resp = http.Response(404, request=http.Request("GET", "https://huggingface.co/x"))
        return cls(msg, response=resp)


def raising(name: str, only: str | None = None, serve_from: Path | None = None):
    """A stand-in hf_hub_download: raises `name` (for files ending in `only`, if given) and
    serves the other files from `serve_from`."""
    def download(repo_id, filename, **kw):
        if only is None or filename.endswith(only):
            if name == "OSError":
                raise OSError("network is unreachable")
            raise hf_error(name)
        if serve_from is None:
            raise hf_error("EntryNotFoundError")
        return str(serve_from / Path(filename).name)
    return download


HUB_CASES = [
    # (id, stand-in factory, source, exception type, key words)
    ("repo-absent-or-private", lambda f: raising("RepositoryNotFoundError"), "someone/absent",
     HubError, ["someone/absent", "not found", "private"]),
    ("repo-gated", lambda f: raising("GatedRepoError"), "someone/gated", HubError,
     ["someone/gated", "gated"]),
    ("offline-not-cached", lambda f: raising("LocalEntryNotFoundError"), "someone/x:sub/dir",
     HubError, ["someone/x", "sub/dir", "not in the local cache"]),
    ("revision-missing", lambda f: raising("RevisionNotFoundError"), "someone/x", HubError,
     ["someone/x", "revision"]),
    ("server-error", lambda f: raising("HfHubHTTPError"), "someone/x", HubError,
     ["someone/x", "download", "failed"]),
    ("network-down", lambda f: raising("OSError"), "someone/x", HubError,
     ["someone/x", "failed"]),
    ("config-missing-in-repo", lambda f: raising("EntryNotFoundError", only="config.json",
                                                 serve_from=f),
     "someone/x:variants/a", HubError, ["synthetic_model_config.json", "not found"]),
    ("weights-missing-in-repo", lambda f: raising("EntryNotFoundError", only=".safetensors",
                                                  serve_from=f),
     "someone/x", HubError, ["synthetic_model.safetensors", "not found"]),
    ("weights-corrupt-in-repo", None, "someone/corrupt", ModelFileError,
     ["synthetic_model.safetensors", "truncated"]),
    ("bad-repo-id", None, "some one/x y", ConfigError, ["not a preset", "Hub id"]),
    ("subfolder-escapes", None, "someone/x:../../etc", ConfigError, ["subfolder", ".."]),
]


@pytest.fixture
def corrupt_folder(tiny_copy):
    data = (tiny_copy / "synthetic_model.safetensors").read_bytes()
    (tiny_copy / "synthetic_model.safetensors").write_bytes(data[: len(data) // 3])
    return tiny_copy


def hub_answers(*args) -> None:
    """Stands in for synthviz.io._check_hub_reachable: the stand-in Hub is always reachable."""


def stand_in_for(case_id, factory, tiny_model_folder, corrupt):
    if case_id == "weights-corrupt-in-repo":
        return raising("EntryNotFoundError", only="hierarchy.json", serve_from=corrupt)
    if factory is None:
        return raising("RepositoryNotFoundError")  # never reached: refused before any download
    return factory(tiny_model_folder)


@pytest.mark.parametrize("case", HUB_CASES, ids=[c[0] for c in HUB_CASES])
def test_hub_failures_api(case, monkeypatch, tiny_model_folder, corrupt_folder, loaded_model):
    import huggingface_hub

    case_id, factory, source, exc_type, words = case
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        stand_in_for(case_id, factory, tiny_model_folder, corrupt_folder))
    monkeypatch.setattr(sio, "_check_hub_reachable", hub_answers)
    before = model_snapshot(loaded_model)
    with pytest.raises(exc_type) as info:
        synthviz.load(source, device="cpu")
    msg = str(info.value)
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    assert_model_unchanged(loaded_model, before)


@pytest.mark.parametrize("case", HUB_CASES, ids=[c[0] for c in HUB_CASES])
def test_hub_failures_cli(case, tiny_model_folder, corrupt_folder):
    case_id, factory, source, _, words = case
    stand_in = stand_in_for(case_id, factory, tiny_model_folder, corrupt_folder)

    def patch():
        import huggingface_hub
        huggingface_hub.hf_hub_download = stand_in
        sio._check_hub_reachable = hub_answers

    res = cli_fork(["stats", source, "--samples", "10", "--device", "cpu"], setup=patch)
    assert_cli_error(res, *words)


def test_hub_repo_without_hierarchy_loads_like_sae_lens(monkeypatch, tiny_copy):
    import huggingface_hub

    (tiny_copy / "hierarchy.json").unlink()  # a repo that has no hierarchy.json at all
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        raising("EntryNotFoundError", only="hierarchy.json", serve_from=tiny_copy))
    monkeypatch.setattr(sio, "_check_hub_reachable", hub_answers)
    m = synthviz.load("someone/flat", device="cpu")
    assert m.num_features == 300
    # the config has a hierarchy section, so sae_lens generates the forest from it and its seed
    from sae_lens.synthetic import SyntheticModel
    theirs = SyntheticModel.load_from_disk(tiny_copy)
    assert theirs.hierarchy is not None and m.forest.to_dict() == theirs.hierarchy.to_dict()


# ---------------------------------------------------------------------------- offline, for real

def hub_env(tmp_path: Path, offline: bool = True) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "HF_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1" if offline else "0",
               SYNTHVIZ_CACHE=str(tmp_path / "synthviz_cache"))
    return env


def populate_hf_home(hf_home: Path, repo_id: str, files_from: Path, subs=(None,)) -> None:
    """The layout huggingface_hub itself writes: blobs, snapshot symlinks, refs/main."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    for sub in subs:
        snap = repo / "snapshots" / COMMIT / (sub or "")
        snap.mkdir(parents=True)
        for f in files_from.iterdir():
            data = f.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            os.symlink(os.path.relpath(blob, snap), snap / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def test_offline_empty_hf_home_names_repo_and_path(tmp_path):
    env = hub_env(tmp_path)
    res = subprocess.run([sys.executable, "-m", "synthviz.cli", "stats", "someone/missing:sub/dir",
                          "--samples", "10"], capture_output=True, text=True, timeout=120, env=env)
    assert_cli_error(CliResult(res.returncode, res.stdout, res.stderr),
                     "someone/missing", "sub/dir", "cache")


# A subprocess that makes unpickling impossible, then loads through every path synthviz has
NO_PICKLE_LOADER = r"""
import hashlib, json, pickle, sys
import torch

def refuse(*a, **k):
    raise AssertionError("unpickling was attempted during a load")

torch.load = refuse
pickle.load = pickle.loads = refuse
pickle.Unpickler = refuse
try:
    import numpy
    numpy.load = refuse
except ImportError:
    pass

import synthviz
from synthviz.config import ModelConfig
from synthviz.builds import build_cached

def digest(m):
    h = hashlib.sha256()
    for t in (m.feature_vectors, m.bias, m.firing_probabilities, m.correlation_factor):
        h.update(t.contiguous().numpy().tobytes())
    h.update(json.dumps(m.forest.to_dict() if m.forest else None).encode())
    return h.hexdigest()

folder, repo, cfg_json = sys.argv[1:4]
out = {"folder": digest(synthviz.load(folder, device="cpu")),
       "hub": digest(synthviz.load(repo, device="cpu")),
       "hub_sub": digest(synthviz.load(repo + ":nested/variant", device="cpu"))}
cfg = ModelConfig.from_dict(json.loads(cfg_json))
out["cache_build"] = digest(build_cached(cfg, device="cpu"))
out["cache_load"] = digest(build_cached(cfg, device="cpu"))  # second time from the disk cache
print(json.dumps(out))
"""


def test_loading_never_unpickles_and_hub_cache_loads_offline(tiny_model_folder, tmp_path):
    from tests.reliability.helpers import tiny_config

    env = hub_env(tmp_path)
    populate_hf_home(Path(env["HF_HOME"]), "someone/synth", tiny_model_folder,
                     subs=(None, "nested/variant"))
    cfg = tiny_config(seed=5, orthogonalization=None)
    res = subprocess.run([sys.executable, "-c", NO_PICKLE_LOADER, str(tiny_model_folder),
                          "someone/synth", json.dumps(cfg)], capture_output=True, text=True,
                         timeout=180, env=env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["folder"] == out["hub"] == out["hub_sub"]
    assert out["cache_build"] == out["cache_load"]
    assert any((Path(env["SYNTHVIZ_CACHE"])).rglob("synthetic_model.safetensors"))


UNSAFE_PATTERNS = {
    "torch.load": re.compile(r"\btorch\s*\.\s*load\s*\("),
    "pickle": re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib|cloudpickle)\b|"
                         r"\b(c?pickle|dill|joblib|cloudpickle)\s*\.\s*loads?\s*\(", re.M),
    # numpy.load is safe only with allow_pickle=False
    "numpy.load": re.compile(r"\b(np|numpy)\s*\.\s*load\s*\((?![^)]*allow_pickle\s*=\s*False)"
                             r"|allow_pickle\s*=\s*True"),
    "weights_only=False": re.compile(r"weights_only\s*=\s*False"),
}


def test_source_has_no_unpickling():
    files = sorted((REPO_ROOT / "synthviz").rglob("*.py")) + sorted((REPO_ROOT / "app").rglob("*.py"))
    assert len(files) > 10
    hits = [f"{f.relative_to(REPO_ROOT)}: {name}" for f in files
            for name, pat in UNSAFE_PATTERNS.items() if pat.search(f.read_text())]
    assert not hits, hits


def test_unsafe_patterns_catch_what_they_should():
    # the grep above can fail: each pattern matches its target and not a lookalike
    assert UNSAFE_PATTERNS["torch.load"].search("x = torch.load(path)")
    assert not UNSAFE_PATTERNS["torch.load"].search("synthviz.load(path)")
    assert UNSAFE_PATTERNS["pickle"].search("import pickle\n")
    assert UNSAFE_PATTERNS["pickle"].search("obj = pickle.loads(b)")
    assert not UNSAFE_PATTERNS["pickle"].search("# no pickle here\n")
    assert UNSAFE_PATTERNS["numpy.load"].search("np.load(f)")
    assert UNSAFE_PATTERNS["numpy.load"].search("np.load(f, allow_pickle=True)")
    assert not UNSAFE_PATTERNS["numpy.load"].search("np.load(f, allow_pickle=False)")


# ---------------------------------------------------------------------------- tokens and serving

class RecordingHub:
    """Stands in for huggingface_hub.HfApi: copies what would be uploaded, or fails loudly."""

    def __init__(self, record: Path, fail_with_token: bool):
        self.record, self.fail = record, fail_with_token

    def create_repo(self, **kw):
        (self.record / "calls.json").write_text(json.dumps(kw))

    def upload_folder(self, folder_path, **kw):
        if self.fail:
            # what an HTTP library may echo back: the request's headers, token and all
            raise RuntimeError(f"401 Unauthorized: headers={{'authorization': 'Bearer "
                               f"{os.environ['HF_TOKEN']}'}} token={os.environ['HF_TOKEN']}")
        shutil.copytree(folder_path, self.record / "uploaded")


@pytest.mark.skipif(importlib.util.find_spec("synthviz.export") is None,
                    reason="synthviz/export.py has not landed")
@pytest.mark.parametrize("fail", [False, True], ids=["upload-ok", "upload-error-echoes-token"])
def test_hub_token_never_appears_in_output_or_files(fail, tiny_model_folder, tmp_path):
    env = {"HF_TOKEN": FAKE_TOKEN, "SYNTHVIZ_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "export"
    res1 = cli_fork(["-v", "export", str(tiny_model_folder), "--out", str(out), "--samples", "50",
                     "--device", "cpu"], env=env)
    assert res1.returncode == 0, res1.stderr
    record = tmp_path / "record"
    record.mkdir()

    def patch():
        import synthviz.export
        synthviz.export._hf_api = lambda: RecordingHub(record, fail)

    res2 = cli_fork(["-v", "push", str(out), "--repo-id", "someone/synth", "--path", "v1"],
                    env=env, setup=patch)
    if fail:
        assert_cli_error(res2, "someone/synth", "failed")
    else:
        assert res2.returncode == 0, res2.stderr
        assert (record / "uploaded" / "synthetic_model.safetensors").is_file()
    texts = [res1.stdout, res1.stderr, res2.stdout, res2.stderr]
    texts += [p.read_bytes().decode(errors="replace") for d in (out, record)
              for p in d.rglob("*") if p.is_file()]
    assert not any(FAKE_TOKEN in t for t in texts)
    assert not any("FAKEtoken" in t for t in texts)  # not even a part of it


def test_serve_script_binds_localhost():
    text = (REPO_ROOT / "scripts" / "serve.sh").read_text()
    lines = [ln for ln in text.splitlines() if "panel serve" in ln and not ln.lstrip().startswith("#")]
    assert lines, "scripts/serve.sh does not run panel serve"
    for ln in lines:
        assert re.search(r"--address[ =]127\.0\.0\.1\b", ln), ln
        assert "0.0.0.0" not in ln and "allow-websocket-origin" not in ln, ln


def test_readme_serve_commands_are_local_and_remote_use_is_documented():
    readme = (REPO_ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|console)?\n(.*?)```", readme, re.S)
    serve = [ln for b in blocks for ln in b.splitlines()
             if "serve" in ln and not ln.lstrip().startswith("#")]
    assert serve, "the README shows no serve command"
    for ln in serve:
        assert "scripts/serve.sh" in ln or re.search(r"--address[ =]127\.0\.0\.1\b", ln), ln
        assert "0.0.0.0" not in ln, ln
    for words in ("--address", "--allow-websocket-origin", "authentication"):
        assert words in readme, f"README does not document {words!r} for remote use"
