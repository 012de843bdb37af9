"""The on-disk cache of built models (the 16k base and expensive variations), keyed by config."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

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
