"""Issue 8.3: an export loses nothing.

Writes go to a temporary folder beside the target and are swapped in at the end; a non-empty
folder is never overwritten without force (and never one with subfolders, the home folder or the
working folder even with force); export names cannot leave the export root; and an export that
is killed (SIGKILL at chosen points and at random moments) or fails with an exception leaves the
target either as it was (absent or the old export) or complete.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import synthviz
import synthviz.cache as scache
import synthviz.io as sio
import synthviz.model_files as smf
from synthviz.cache import atomic_write_folder
from synthviz.errors import SynthvizError
from synthviz.model_files import save_model
from tests.reliability.helpers import folder_digest

HAS_EXPORT = importlib.util.find_spec("synthviz.export") is not None


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def other_model(model):
    """The same model with a different bias: a new export that is easy to tell from the old."""
    return model.replace(bias=model.bias + 1.0)


def assert_is_model(folder: Path, model) -> None:
    m = synthviz.load_folder(folder, device="cpu")
    assert torch.equal(m.bias, model.bias) and torch.equal(m.feature_vectors, model.feature_vectors)
    assert m.forest == model.forest


# ---------------------------------------------------------------------------- refusing

def test_new_target_is_complete_and_leaves_nothing_beside_it(loaded_model, tmp_path):
    target = tmp_path / "out"
    save_model(loaded_model, target)
    assert_is_model(target, loaded_model)
    assert leftovers(tmp_path, "out") == []


def test_non_empty_target_needs_force(loaded_model, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    before = folder_digest(target)
    with pytest.raises(SynthvizError, match="not empty.*--force"):
        save_model(loaded_model, target)
    assert folder_digest(target) == before
    save_model(loaded_model, target, force=True)
    assert_is_model(target, loaded_model)
    assert not (target / "notes.txt").exists()  # replaced, not merged
    assert leftovers(tmp_path, "out") == []


def test_target_that_is_a_file_is_refused(loaded_model, tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(SynthvizError, match="not a folder"):
        save_model(loaded_model, tmp_path / "out", force=True)
    assert (tmp_path / "out").read_text() == "a file"


def test_force_never_replaces_a_folder_with_subfolders(loaded_model, tmp_path):
    target = tmp_path / "project"
    (target / "src").mkdir(parents=True)
    (target / "src" / "main.py").write_text("print('precious')")
    before = folder_digest(target)
    with pytest.raises(SynthvizError, match="subfolder 'src'.*even with --force"):
        save_model(loaded_model, target, force=True)
    assert folder_digest(target) == before


def test_force_never_replaces_home_or_working_folder(loaded_model, tmp_path, monkeypatch):
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    (work / "data.txt").write_text("keep")
    (home / "notes.txt").write_text("keep")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    for target in (home, work, Path(".")):
        before = folder_digest(target)
        with pytest.raises(SynthvizError, match="home or working folder"):
            save_model(loaded_model, target, force=True)
        assert folder_digest(target) == before


# ---------------------------------------------------------------------------- injected failures

class Boom(Exception):
    pass


def failing_writer(model, after_files: int):
    def write(tmp):
        smf.write_model_files(model, tmp)
        files = sorted(tmp.iterdir())
        for extra in files[after_files:]:
            extra.unlink()  # as if the write stopped part-way
        raise Boom("disk went away")
    return write


@pytest.mark.parametrize("existing", [False, True], ids=["new-target", "old-export"])
@pytest.mark.parametrize("after_files", [0, 1, 2])
def test_exception_mid_write_leaves_target_as_it_was(existing, after_files, loaded_model, tmp_path):
    target = tmp_path / "out"
    if existing:
        save_model(loaded_model, target)
    before = folder_digest(target)
    with pytest.raises(Boom):
        atomic_write_folder(target, failing_writer(other_model(loaded_model), after_files),
                            force=True)
    assert folder_digest(target) == before
    assert target.exists() == existing
    assert leftovers(tmp_path, "out") == []


def test_exception_in_swap_leaves_old_export(loaded_model, tmp_path, monkeypatch):
    target = tmp_path / "out"
    save_model(loaded_model, target)
    before = folder_digest(target)

    def broken(a, b):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scache, "_exchange", broken)
    with pytest.raises(OSError):
        save_model(other_model(loaded_model), target, force=True)
    assert folder_digest(target) == before
    assert leftovers(tmp_path, "out") == []


def test_two_rename_fallback_restores_old_on_failure(loaded_model, tmp_path, monkeypatch):
    target = tmp_path / "out"
    save_model(loaded_model, target)
    before = folder_digest(target)
    monkeypatch.setattr(scache, "_exchange", lambda a, b: False)  # a filesystem without exchange
    real_rename = os.rename
    calls = []

    def rename(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # the move of the new folder into place fails
            raise OSError(5, "Input/output error")
        return real_rename(a, b)

    monkeypatch.setattr(scache.os, "rename", rename)
    with pytest.raises(OSError):
        save_model(other_model(loaded_model), target, force=True)
    monkeypatch.setattr(scache.os, "rename", real_rename)
    assert folder_digest(target) == before
    assert leftovers(tmp_path, "out") == []
    save_model(other_model(loaded_model), target, force=True)  # and the fallback path works
    assert_is_model(target, other_model(loaded_model))


def test_cli_reports_write_failure_in_one_line(tiny_model_folder, tmp_path):
    from tests.reliability.helpers import assert_cli_error, cli_fork

    if not HAS_EXPORT:
        pytest.skip("synthviz/export.py has not landed")
    target = tmp_path / "out"

    def no_space():
        import synthviz.model_files

        def write(model, folder):
            raise OSError(28, "No space left on device", str(folder))
        synthviz.model_files.write_model_files = write

    res = cli_fork(["export", str(tiny_model_folder), "--out", str(target), "--samples", "10",
                    "--device", "cpu"], setup=no_space, env={"SYNTHVIZ_CACHE": str(tmp_path / "c")})
    assert_cli_error(res, "No space left on device")
    assert not target.exists() and leftovers(tmp_path, "out") == []


# ---------------------------------------------------------------------------- killed exports

def in_killed_child(body, wait_for: str = "STALLED", then_sleep: float = 0.0,
                    timeout: float = 60) -> None:
    """Fork; the child runs body(say) and the parent SIGKILLs it once it says `wait_for`
    (after `then_sleep` more seconds). A forked child is a real process, killed for real, and
    costs milliseconds instead of an interpreter start."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            torch.set_num_threads(1)  # OpenMP's pool does not survive fork
            body(lambda msg: os.write(w, (msg + "\n").encode()))
            os.write(w, b"FINISHED\n")
        finally:
            os._exit(0)
    os.close(w)
    try:
        deadline = time.monotonic() + timeout
        buf = b""
        while wait_for.encode() not in buf:
            assert time.monotonic() < deadline, f"child never said {wait_for}: {buf!r}"
            chunk = os.read(r, 1024)
            assert chunk, f"child ended before saying {wait_for}: {buf!r}"
            buf += chunk
            assert b"FINISHED" not in buf, "the child finished before it could be killed"
        time.sleep(then_sleep)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)


def stalled_writer(model, target, point, writer):
    def body(say):
        def stall():
            say("STALLED")
            time.sleep(120)

        if point == "writing":
            real_write = smf.write_model_files

            def write(m, folder):
                real_write(m, folder)
                os.remove(os.path.join(folder, "hierarchy.json"))  # one file still to come
                stall()
            smf.write_model_files = write
        elif point in ("before-swap", "after-swap"):
            real_exchange = scache._exchange

            def exchange(a, b):
                if point == "before-swap":
                    stall()
                ok = real_exchange(a, b)
                stall()
                return ok
            scache._exchange = exchange
        elif point == "between-renames":  # the fallback without an atomic exchange
            scache._exchange = lambda a, b: False
            real_rename = os.rename

            def rename(a, b):
                real_rename(a, b)
                stall()
            scache.os.rename = rename
        if writer == "export":
            from synthviz.export import export_model
            export_model(model, target, force=True, samples=10)
        else:
            save_model(model, target, force=True)
    return body


WRITERS = ["save"] + (["export"] if HAS_EXPORT else [])


# a new target is published by one plain rename, so only "writing" applies to it
KILL_POINTS = [("writing", False), ("writing", True), ("before-swap", True),
               ("after-swap", True), ("between-renames", True)]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("point,existing", KILL_POINTS,
                         ids=[f"{p}-{'old-export' if e else 'new-target'}" for p, e in KILL_POINTS])
def test_sigkill_leaves_old_or_complete(point, existing, writer, loaded_model, tmp_path):
    target = tmp_path / "out"
    if existing:
        save_model(loaded_model, target)
    before = folder_digest(target)
    new = other_model(loaded_model)
    in_killed_child(stalled_writer(new, target, point, writer))
    if point == "after-swap":
        assert_is_model(target, new)  # the swap happened: the new export is complete
    elif point == "between-renames":
        # the one window without a target: the old export waits intact beside it
        assert not target.exists()
        (old,) = [p for p in tmp_path.iterdir() if p.name.startswith(".out.old-")]
        assert folder_digest(old) == before
    else:
        assert folder_digest(target) == before  # absent, or the old export byte for byte
    # a later export cleans up what the killed one left, and succeeds
    save_model(new, target, force=True)
    assert_is_model(target, new)
    assert leftovers(tmp_path, "out") == []


def test_sigkill_at_random_moments(loaded_model, tmp_path):
    rng = random.Random(1234)
    target = tmp_path / "out"
    a, b = loaded_model, other_model(loaded_model)
    save_model(a, target)

    def loop(say):
        say("READY")
        i = 0
        while True:  # alternate the two models until killed
            save_model(b if i % 2 == 0 else a, target, force=True)
            i += 1

    seen = set()
    for _ in range(12):
        in_killed_child(loop, wait_for="READY", then_sleep=rng.uniform(0.02, 0.3))
        m = synthviz.load_folder(target, device="cpu")  # always loadable: never half-written
        assert torch.equal(m.feature_vectors, a.feature_vectors)
        assert torch.equal(m.bias, a.bias) or torch.equal(m.bias, b.bias)
        seen.add(bool(torch.equal(m.bias, b.bias)))
    assert seen == {True, False}  # the kills landed at different points of the loop


KILLED_CLI_EXPORT = r"""
import sys, time
import synthviz.model_files as smf
from synthviz.cli import main

real_write = smf.write_model_files
def write(m, folder):
    real_write(m, folder)
    print("STALLED", flush=True)
    time.sleep(120)
smf.write_model_files = write
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(not HAS_EXPORT, reason="synthviz/export.py has not landed")
def test_sigkill_of_a_real_cli_export_process(tiny_model_folder, loaded_model, tmp_path):
    target = tmp_path / "out"
    save_model(loaded_model, target)
    before = folder_digest(target)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLI_EXPORT, "export", str(tiny_model_folder), "--rel-p",
         "0.5", "--out", str(target), "--force", "--samples", "10", "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SYNTHVIZ_CACHE": str(tmp_path / "cache")})
    try:
        line = proc.stdout.readline()
        assert line.strip() == "STALLED", (line, proc.stderr.read() if proc.poll() is not None else "")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert folder_digest(target) == before
    assert leftovers(tmp_path, "out")  # the killed export's temp folder, until the next export


# ---------------------------------------------------------------------------- export names

BAD_NAMES = ["..", ".", "../escape", "/etc", "/tmp/x", "a/b", "a\\b", "~", "~root", "",
             "   ", "C:evil", "nul\0byte", "../../home"]


@pytest.mark.skipif(not HAS_EXPORT, reason="synthviz/export.py has not landed")
@pytest.mark.parametrize("name", BAD_NAMES)
def test_export_names_cannot_escape_the_root(name, tmp_path):
    from synthviz.export import safe_export_path

    root = tmp_path / "exports"
    root.mkdir()
    with pytest.raises(SynthvizError):
        safe_export_path(root, name)
    assert list(root.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["exports"]


@pytest.mark.skipif(not HAS_EXPORT, reason="synthviz/export.py has not landed")
def test_export_name_through_a_symlink_is_refused(tmp_path):
    from synthviz.export import safe_export_path

    root = tmp_path / "exports"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(SynthvizError, match="escapes"):
        safe_export_path(root, "link")
    assert safe_export_path(root, "rel-p-0.5") == (root / "rel-p-0.5").resolve()


@pytest.mark.skipif(not HAS_EXPORT, reason="synthviz/export.py has not landed")
def test_export_model_failure_keeps_old_export(loaded_model, tmp_path, monkeypatch):
    from synthviz.export import export_model

    target = tmp_path / "out"
    export_model(loaded_model, target, samples=10)
    before = folder_digest(target)
    assert "README.md" in before

    def broken(model, folder):
        (folder / "synthetic_model_config.json").write_text("{")
        raise Boom("interrupted")

    monkeypatch.setattr(smf, "write_model_files", broken)
    with pytest.raises(Boom):
        export_model(other_model(loaded_model), target, force=True, samples=10)
    assert folder_digest(target) == before
    assert leftovers(tmp_path, "out") == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_and_folder_have_the_usual_modes(loaded_model, tmp_path, umask):
    old = os.umask(umask)
    try:
        target = save_model(loaded_model, tmp_path / "out")
    finally:
        os.umask(old)
    assert (target.stat().st_mode & 0o777) == 0o777 & ~umask
    files = sorted(p.name for p in target.iterdir())
    assert sio.WEIGHTS_FILE in files and sio.CONFIG_FILE in files
    for name in files:
        assert ((target / name).stat().st_mode & 0o777) == 0o666 & ~umask, name
