"""Shared tools for the reliability tests: a small model, snapshots, and CLI runners.

`cli_fork` runs `synthviz.cli.main(argv)` in a forked child of the test process (torch already
imported, so each case costs milliseconds, not a 2 s interpreter start; the child runs torch on
one thread, since OpenMP's pool does not survive a fork). The child behaves like a
real `python -m synthviz.cli` process: its own exit status, stdout and stderr, and an uncaught
exception prints a traceback. `cli_subprocess` runs the real console entry point for the cases
that depend on environment variables read at import time (the Hub's offline switch).
"""

from __future__ import annotations

import copy
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

TINY_CONFIG = {
    "num_features": 300,
    "hidden_dim": 16,
    "firing_probability": {"generator_name": "zipfian", "exponent": 0.5, "max_prob": 0.4,
                           "min_prob": 0.0001},  # low enough that compensation clamps nothing
    "hierarchy": {"total_root_nodes": 8, "branching_factor": [2, 4], "max_depth": 3,
                  "mutually_exclusive_portion": 0.7, "mutually_exclusive_min_depth": 0,
                  "mutually_exclusive_max_depth": None, "compensate_probabilities": True,
                  "scale_children_by_parent": True},
    "orthogonalization": {"num_steps": 3, "lr": 3e-4, "chunk_size": 512},
    "correlation": {"rank": 4, "correlation_scale": 0.1, "seed": None},
    "std_firing_magnitudes": {"generator_name": "folded_normal", "mean": 0.5, "std": 0.5,
                              "min_value": None, "max_value": None},
    "mean_firing_magnitudes": {"generator_name": "linear", "start": 5.0, "end": 4.0},
    "bias": 0.5,
    "dtype": "float32",
    "seed": 11,
}


def tiny_config(**changes) -> dict:
    d = copy.deepcopy(TINY_CONFIG)
    d.update(changes)
    return d


# ---------------------------------------------------------------------------- snapshots

def model_snapshot(model) -> dict:
    """Deep copies of everything a model holds, to prove a failed operation left it alone."""
    snap = {}
    for name in ("feature_vectors", "bias", "firing_probabilities", "mean_magnitudes",
                 "std_magnitudes", "correlation_factor", "correlation_diag"):
        t = getattr(model, name)
        snap[name] = None if t is None else t.detach().clone()
    snap["forest"] = None if model.forest is None else model.forest.to_dict()
    snap["cfg"] = model.cfg.to_dict()
    return snap


def assert_model_unchanged(model, snap: dict) -> None:
    now = model_snapshot(model)
    for key, before in snap.items():
        after = now[key]
        if isinstance(before, torch.Tensor):
            assert after is not None and torch.equal(before, after), f"{key} changed"
        else:
            assert before == after, f"{key} changed"


def folder_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below `folder` (empty if it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------- running the CLI

@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli_fork(argv: list[str], env: dict | None = None,
             setup: Callable[[], None] | None = None, timeout: float = 120) -> CliResult:
    """Run the CLI's main(argv) in a forked child; `setup` runs in the child first (patches)."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            os.environ.update(env or {})
            # the parent's OpenMP pool does not survive fork: a parallel op would deadlock
            torch.set_num_threads(1)
            if setup is not None:
                setup()
            from synthviz.cli import main
            code = main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # what the interpreter would print for an uncaught exception
            traceback.print_exc()
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code or 0)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"CLI {argv} still running after {timeout} s")
        time.sleep(0.01)
    rc = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    return CliResult(rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def cli_subprocess(argv: list[str], env: dict | None = None, timeout: float = 180) -> CliResult:
    res = subprocess.run([sys.executable, "-m", "synthviz.cli", *argv], capture_output=True,
                         text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return CliResult(res.returncode, res.stdout, res.stderr)


def assert_cli_error(res: CliResult, *words: str) -> str:
    """Non-zero exit, no traceback, and a final 'synthviz: error:' line holding every word."""
    assert res.returncode != 0, f"exit 0; stdout={res.stdout!r} stderr={res.stderr!r}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    last = lines[-1].split("\r")[-1]  # a progress bar may share the line
    assert last.startswith("synthviz: error:"), res.stderr
    for w in words:
        assert w.lower() in last.lower(), f"{w!r} not in {last!r}"
    return last
