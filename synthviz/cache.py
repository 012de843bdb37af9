"""The on-disk cache of built models (the 16k base and expensive variations), keyed by config.

Several processes may share the cache (app workers, the CLI, notebooks) and any of them may be
killed at any moment. An entry is therefore only ever published complete: it is written under a
temporary name unique to the writer, flushed to disk, and renamed into place (folders by
`synthviz.io.atomic_write_folder`; single files, such as rho_mm, L0 solutions and the app's
statistics, by `write_cache_file`). Two writers of one key
write the same content, so whichever rename lands is the entry; a killed writer leaves only a
temporary name that no reader looks at and a later writer removes.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

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
