"""Statistics on disk: the superposition statistics of a dictionary as one .npz (no pickle),
named by the dictionary's content and the code that computed them (`synthviz.cache` holds the
folder and the atomic write)."""

from __future__ import annotations

import dataclasses
import logging

import torch

log = logging.getLogger(__name__)


def superposition_cache_file(v: torch.Tensor, bins: int):
    """Cache file named by the dictionary's content and the statistics code that computed it."""
    import hashlib
    from pathlib import Path

    import synthviz.stats.superposition as sup
    from synthviz.cache import cache_key, cache_root

    h = hashlib.sha256()
    h.update(f"{tuple(v.shape)} {v.dtype}".encode())
    h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    code = hashlib.sha256(Path(sup.__file__).read_bytes()).hexdigest()
    payload = {"superposition": h.hexdigest(), "code": code, "bins": bins}
    return cache_root() / "stats" / (cache_key(payload) + ".npz")


def save_stats(path, stats) -> None:
    """A statistics dataclass of tensors, dicts of tensors and scalars as one .npz (no pickle)."""
    import io
    import json

    import numpy as np

    from synthviz.cache import write_cache_file
    arrays, meta = {}, {}
    for f in dataclasses.fields(stats):
        val = getattr(stats, f.name)
        if isinstance(val, torch.Tensor):
            arrays[f"t.{f.name}"] = val.detach().cpu().numpy()
        elif isinstance(val, dict):
            meta[f.name] = {str(k): (float(x) if not isinstance(x, torch.Tensor) else None)
                            for k, x in val.items()}
            for k, x in val.items():
                if isinstance(x, torch.Tensor):
                    arrays[f"d.{f.name}.{k}"] = x.detach().cpu().numpy()
        else:
            meta[f.name] = val
    arrays["meta"] = np.array(json.dumps({"class": type(stats).__name__, "fields": meta}))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        write_cache_file(path, buf.getvalue())
    except OSError as exc:  # a read-only cache only costs the recomputation
        log.warning("could not cache statistics at %s: %s", path, exc)


def load_stats(path):
    import json

    import numpy as np
    from synthviz.stats.superposition import SuperpositionStats
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            kw = {}
            for f in dataclasses.fields(SuperpositionStats):
                if f"t.{f.name}" in z:
                    kw[f.name] = torch.from_numpy(z[f"t.{f.name}"].copy())
                elif isinstance(meta["fields"].get(f.name), dict):
                    d = {}
                    for k, x in meta["fields"][f.name].items():
                        key = int(k) if k.lstrip("-").isdigit() else k
                        d[key] = (torch.from_numpy(z[f"d.{f.name}.{k}"].copy()) if x is None
                                  else x)
                    kw[f.name] = d
                elif f.name in meta["fields"]:
                    kw[f.name] = meta["fields"][f.name]
            return SuperpositionStats(**kw)
    except Exception as exc:  # a damaged or outdated entry is recomputed, not trusted
        log.warning("ignoring cached statistics %s: %s", path, exc)
        return None
