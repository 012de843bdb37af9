"""The on-disk cache of built models (the 16k base and expensive variations), keyed by config.

Several processes may share the cache (app workers, the CLI, notebooks) and any of them may be
killed at any moment. An entry is therefore only ever published complete: it is written under a
temporary name unique to the writer, flushed to disk, and renamed into place (folders by
`atomic_write_folder` below, which exports use too; single files, such as rho_mm, L0 solutions and the app's
statistics, by `write_cache_file`). Two writers of one key
write the same content, so whichever rename lands is the entry; a killed writer leaves only a
temporary name that no reader looks at and a later writer removes.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from synthviz.errors import SynthvizError

CACHE_VERSION = 1


def cache_root() -> Path:
    env = os.environ.get("SYNTHVIZ_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "synthviz"


def cache_key(payload: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **payload}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def model_cache_dir(payload: dict) -> Path:
    return cache_root() / "models" / cache_key(payload)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else
    return True


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def remove_stale_temp_files(path: Path) -> None:
    """Remove temporary files that killed writers of `path` left beside it."""
    prefix = _temp_prefix(path)
    for tmp in path.parent.glob(glob.escape(prefix) + "*"):
        pid = tmp.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                tmp.unlink()
            except OSError:
                pass


def write_cache_file(path: Path, data: bytes) -> None:
    """Publish `data` at `path` complete or not at all (unique temp file, fsync, rename).

    Raises OSError when the cache cannot be written; callers treat that as a cache miss.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(path)
    tmp = path.with_name(f"{_temp_prefix(path)}{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def write_cache_json(path: Path, value: Any) -> None:
    write_cache_file(path, json.dumps(value).encode())


# ---------------------------------------------------------------------------- folders

def atomic_write_folder(target: str | Path, write, *, force: bool = False,
                        exist_ok: bool = False) -> Path:
    """Call write(tmp_folder) then move tmp_folder to `target` in one rename.

    Refuses a non-empty target unless `force`; with `force` the old folder is replaced only after
    the new one is complete (one atomic exchange on Linux), and never a folder with subfolders
    (see `_check_replaceable`). A kill at any moment leaves `target` as it was or complete.
    With `exist_ok` (cache entries, whose writers all write the same content) a non-empty target
    is kept: nothing is written when it exists at the start, and when another process publishes
    it first, this one's copy is discarded.
    """
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise SynthvizError(f"export target {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        if exist_ok and not force:
            return target
        if not force:
            raise SynthvizError(f"export target {target} is not empty; choose an empty folder or "
                                "pass --force to replace it")
        _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        write(tmp)
        _usual_modes(tmp)
        _fsync_tree(tmp)
        published = False
        if not (force and target.exists()):
            try:
                os.rename(tmp, target)  # fails when another writer filled target meanwhile
                published = True
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if exist_ok:  # the same entry, published first by another process: keep it
                    shutil.rmtree(tmp, ignore_errors=True)
                    published = True
                elif not force:
                    raise SynthvizError(f"export target {target} was filled by another "
                                        "process during this export; nothing was replaced") \
                        from None
        if not published:
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
            else:
                old = target.parent / f".{target.name}.old-{os.getpid()}"
                os.rename(target, old)
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(old, target)
                    raise
                shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _check_replaceable(target: Path) -> None:
    """With force, replace only a flat folder of files (what an export is), never one holding
    subfolders, the home folder, or the working folder and its parents, so a mistyped `--out`
    with `--force` cannot delete a project or a home directory."""
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    if resolved in (Path.home().resolve(), cwd, *cwd.parents):
        raise SynthvizError(f"export target {target} is the home or working folder or one of its "
                            "parents; refusing to replace it even with --force")
    subdirs = sorted(e.name for e in target.iterdir() if e.is_dir())
    if subdirs:
        raise SynthvizError(f"export target {target} holds subfolder {subdirs[0]!r}, so it is not "
                            "a model export; refusing to replace it even with --force (choose "
                            "another folder or empty it yourself)")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False when unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # the filesystem or kernel cannot exchange; use two renames
    raise OSError(err, os.strerror(err), str(b))


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is racy)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_modes(folder: Path) -> None:
    """Modes a plain write would give (0666/0777 less the umask): mkdtemp makes the folder 0700
    and safetensors writes 0600, which would hide an export from its other users."""
    mask = current_umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~mask)
        elif path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o777 & ~mask)
    os.chmod(folder, 0o777 & ~mask)


def _fsync_tree(folder: Path) -> None:
    # the new files reach the disk before the rename that publishes them
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


def _remove_stale_temps(target: Path) -> None:
    """Remove temp and old folders that a killed earlier write of `target` left behind."""
    for kind in ("tmp", "old"):
        prefix = f".{target.name}.{kind}-"
        for path in target.parent.glob(glob.escape(prefix) + "*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
