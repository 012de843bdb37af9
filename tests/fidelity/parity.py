"""Helpers comparing synthviz with sae_lens: folders both load, and sampled statistics compared
with tolerances from the sample size.

Each statistic is a count of samples (a feature active, both features of a pair active), so two
independent runs of n samples give binomial counts; their difference is tested with a pooled
two-sample z statistic. The bound is Bonferroni-corrected over every count compared, so a run
fails by chance with probability at most ALPHA; seeds are fixed, so CI is deterministic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

ALPHA = 1e-4  # family-wise chance of a false failure per comparison


def z_bound(tests: int, alpha: float = ALPHA) -> float:
    """Two-sided normal quantile for `tests` comparisons at family-wise level alpha."""
    q = 1 - alpha / (2 * max(1, tests))
    return math.sqrt(2) * float(torch.erfinv(torch.tensor(2 * q - 1, dtype=torch.float64)))


def pairs_of(forest) -> list[tuple[int, int]]:
    """Parent/child pairs, neighbouring children of each parent, and neighbouring members of
    each ME group (those must never fire together), deduplicated."""
    if forest is None:
        return []
    out: set[tuple[int, int]] = set()
    for par, kids in forest.children.items():
        out.update((par, c) for c in kids)
        out.update(zip(kids, kids[1:]))
    for _, kids in forest.me_groups():
        out.update(zip(kids, kids[1:]))
    return sorted(out)


def active_sae_lens(model, n: int, seed: int, batch: int = 5000) -> torch.Tensor:
    """[n, N] feature activations (float64) from sae_lens, its global RNG seeded (restored)."""
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for s in range(0, n, batch):
            acts = model.activation_generator.sample(min(batch, n - s))
            out.append((acts.to_dense() if acts.is_sparse else acts).double())
    return torch.cat(out)


def active_synthviz(model, n: int, seed: int, method: str = "sparse") -> torch.Tensor:
    _, rows, cols, vals = model.sample_entries(n, seed=seed, method=method)
    a = torch.zeros(n, model.num_features, dtype=torch.float64)
    a[rows, cols] = vals.double()
    return a


def compare(ours_acts: torch.Tensor, theirs_acts: torch.Tensor, pairs: list[tuple[int, int]]
            ) -> list[str]:
    """Problems found comparing two activation matrices of equal sample count (empty: alike):
    rates, co-firing counts, L0, and each feature's mean activation (magnitudes, including
    a child's scaling by its parent)."""
    ours, theirs = ours_acts > 0, theirs_acts > 0
    n = ours.shape[0]
    assert theirs.shape == ours.shape
    counts = [(f"rate of feature {i}", a, b) for i, (a, b) in
              enumerate(zip(ours.sum(0).tolist(), theirs.sum(0).tolist()))]
    if pairs:
        i = torch.tensor([p for p, _ in pairs])
        j = torch.tensor([c for _, c in pairs])
        both_o = (ours[:, i] & ours[:, j]).sum(0).tolist()
        both_t = (theirs[:, i] & theirs[:, j]).sum(0).tolist()
        counts += [(f"co-firing of {p} and {c}", a, b)
                   for (p, c), a, b in zip(pairs, both_o, both_t)]
    bound = z_bound(len(counts) + 1 + ours.shape[1])
    bad = []
    for what, a, b in counts:
        pooled = (a + b + 1) / (2 * n + 2)  # +1 keeps the variance positive for rare events
        z = (a - b) / math.sqrt(2 * n * pooled * (1 - pooled))
        if abs(z) > bound:
            bad.append(f"{what}: {a} vs {b} of {n} (z={z:.1f}, bound {bound:.1f})")
    # L0: per-sample counts, a two-sample z test on the means
    lo, lt = ours.sum(1).double(), theirs.sum(1).double()
    se = math.sqrt((lo.var().item() + lt.var().item()) / n) if n > 1 else 0.0
    diff = lo.mean().item() - lt.mean().item()
    if se > 0 and abs(diff / se) > bound or se == 0 and diff != 0:
        bad.append(f"L0: {lo.mean().item():.4f} vs {lt.mean().item():.4f} (se {se:.4f})")
    # mean activation per feature: a z test with the samples' own variances
    mo, mt = ours_acts.mean(0), theirs_acts.mean(0)
    se = ((ours_acts.var(0) + theirs_acts.var(0)) / n).sqrt()
    for i in range(ours.shape[1]):
        d, s = float(mo[i] - mt[i]), float(se[i])
        if (s > 0 and abs(d) > bound * s) or (s == 0 and abs(d) > 1e-9):
            bad.append(f"mean activation of feature {i}: {float(mo[i]):.4f} vs "
                       f"{float(mt[i]):.4f} (se {s:.4f})")
    return bad


def write_folder(folder: Path, cfg: dict, tensors: dict[str, torch.Tensor],
                 hierarchy: dict | None) -> Path:
    """A model folder in sae_lens's format, written by hand (no synthviz code involved)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "synthetic_model_config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in tensors.items()},
              str(folder / "synthetic_model.safetensors"))
    if hierarchy is not None:
        (folder / "hierarchy.json").write_text(json.dumps(hierarchy))
    return folder


def sae_lens_folder(folder: Path, cfg: dict, hierarchy: dict | None,
                    extra: dict[str, torch.Tensor] | None = None) -> Path:
    """A folder as sae_lens would store `cfg` with `hierarchy` in place of the generated one:
    tensors built by sae_lens, stored probabilities compensated with that hierarchy (what its
    loader regenerates, so both of its sampling paths agree)."""
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig
    from sae_lens.synthetic.hierarchy import Hierarchy

    model = SyntheticModel(SyntheticModelConfig.from_dict(json.loads(json.dumps(cfg))))
    p = model.cfg.firing_probability.generate(cfg["num_features"], seed=cfg["seed"])
    h = cfg.get("hierarchy")
    if hierarchy is not None and h is not None and h.get("compensate_probabilities"):
        p = (p * Hierarchy.from_dict(hierarchy).compute_probability_correction_factors(p)
             ).clamp(max=1.0)
    t = {"feature_vectors": model.feature_dict.feature_vectors.data,
         "bias": model.feature_dict.bias.data, "firing_probabilities": p}
    if model.correlation_matrix is not None:
        t["correlation_factor"] = model.correlation_matrix.correlation_factor
        t["correlation_diag"] = model.correlation_matrix.correlation_diag
    t.update(extra or {})
    return write_folder(folder, cfg, t, hierarchy)
