"""One process that fills a synthviz disk cache entry, for tests/reliability/test_cache_faults.py.

    python -m tests.reliability.cache_child KIND MODE SYNC_DIR

KIND: model (a built model folder), dictionary (a new-dimension dictionary folder) or rho (the
rho_mm JSON file). MODE: plain; race (wait, at the rename that publishes the entry, until a
second process is there too); kill (half-truncate the unpublished entry, say so, and wait to be
killed). Prints one JSON line: the entry's digest, the model's source, whether it raced.
SYNTHVIZ_CACHE chooses the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

ENTRY_FILES = {"model": "synthetic_model.safetensors", "dictionary": "dictionary.safetensors"}


def digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fill(kind: str) -> dict:
    from synthviz.config import ModelConfig
    from tests.reliability.helpers import tiny_config

    cfg = ModelConfig.from_dict(tiny_config())
    if kind == "model":
        from synthviz.builds import build_cached
        m = build_cached(cfg, device="cpu")
        return {"digest": digest(m.feature_vectors, m.bias, m.firing_probabilities,
                                 m.correlation_factor), "source": m.provenance.source}
    if kind == "dictionary":
        from synthviz.builds import build_dictionary
        return {"digest": digest(*build_dictionary(cfg, 300, 24, device="cpu"))}
    from synthviz.export import cached_rho_mm
    vectors = torch.randn(200, 16, generator=torch.Generator().manual_seed(3))
    return {"digest": repr(cached_rho_mm(vectors))}


def install_hook(kind: str, mode: str, sync: Path, state: dict) -> None:
    """Wrap os.rename/os.replace: the call that moves a temporary name onto the entry waits."""
    def hooked(real):
        def move(src, dst, *a, **kw):
            s, d = Path(os.fsdecode(src)), Path(os.fsdecode(dst))
            entry = d.name == "rho_mm.json" if kind == "rho" else d.parent.name == "models"
            if entry and "tmp" in s.name and s.parent == d.parent and mode != "plain":
                (sync / f"{mode}-{os.getpid()}").touch()
                if mode == "race":
                    end = time.time() + 60
                    while len(list(sync.glob("race-*"))) < 2 and time.time() < end:
                        time.sleep(0.01)
                    state["raced"] = len(list(sync.glob("race-*"))) >= 2
                else:  # kill: leave a half-written entry under its temporary name
                    f = s / ENTRY_FILES[kind] if s.is_dir() else s
                    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
                    (sync / f"ready-{os.getpid()}").touch()
                    time.sleep(600)
            return real(src, dst, *a, **kw)
        return move
    os.rename, os.replace = hooked(os.rename), hooked(os.replace)


def main() -> None:
    kind, mode, sync = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    torch.set_num_threads(1)
    state = {"raced": False}
    install_hook(kind, mode, sync, state)
    out = fill(kind)
    print(json.dumps({**out, **state}))


if __name__ == "__main__":
    main()
