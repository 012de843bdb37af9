"""The plain-text form of an SAE evaluation, for `synthviz sae-eval` without `--json`."""

from __future__ import annotations

from synthviz.sae.evaluate import SAEEvalResult


def format_result(result: SAEEvalResult) -> str:
    d = result.to_dict()
    lines = [f"samples: {d['n_samples']}"]
    for key in ("mcc", "uniqueness", "explained_variance", "shrinkage", "sae_l0", "true_l0"):
        lines.append(f"{key}: {d[key]:.4f}")
    lines.append(f"dead_latents: {d['dead_latents']}")
    for key, v in d["classification"].items():
        lines.append(f"classification/{key}: {v:.4f}")
    a, s = d["absorption"], d["splitting"]
    lines.append(f"absorption: mean gap {a['mean_gap']:.4f} over {a['edges']} parent->child "
                 f"edges ({a['edges_gap_over_0.5']} above 0.5)")
    lines.append(f"splitting: {s['split_features']} features with 2 or more latents at "
                 f"|cos| >= {s['threshold']}")
    return "\n".join(lines)
