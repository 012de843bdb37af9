"""One model of each variation family, built directly from a model's tensors (no variations
module needed): constant std, another hidden dim, truncation, relative p, another hierarchy."""

from __future__ import annotations

import torch

from synthviz.config import HierarchyConfig
from synthviz.hierarchy import generate_forest
from synthviz.model import compensated_probabilities, make_dictionary


def base_p(model) -> torch.Tensor:
    cfg = model.cfg
    return cfg.firing_probability.generate(model.num_features, seed=cfg.sub_seed(0)).to(
        model.firing_probabilities.dtype)


def std_family(model, std: float = 2.5):
    return model.replace(std_magnitudes=torch.full_like(model.std_magnitudes, std))


def hidden_dim_family(model, dim: int):
    # a fresh unit dictionary (not orthogonalized: L0 and rates do not depend on it)
    vec, bias = make_dictionary(model.num_features, dim, float(model.bias.norm()), seed=1)
    return model.replace(feature_vectors=vec, bias=bias)


def truncate_family(model, n: int):
    f = model.forest.truncate(n) if model.forest is not None else None
    cf = model.correlation_factor
    cd = model.correlation_diag
    return model.replace(
        feature_vectors=model.feature_vectors[:n], firing_probabilities=model.firing_probabilities[:n],
        mean_magnitudes=model.mean_magnitudes[:n], std_magnitudes=model.std_magnitudes[:n],
        forest=f, correlation_factor=None if cf is None else cf[:n],
        correlation_diag=None if cd is None else cd[:n])


def rel_p_family(model, k: float):
    p, _ = compensated_probabilities(base_p(model) * k, model.forest, True)
    return model.replace(firing_probabilities=p.to(model.firing_probabilities.dtype))


def hierarchy_family(model, roots: int, branching, depth: int, me: float):
    hc = HierarchyConfig(total_root_nodes=roots, branching_factor=branching, max_depth=depth,
                         mutually_exclusive_portion=me, compensate_probabilities=True,
                         scale_children_by_parent=True)
    forest = generate_forest(model.num_features, hc, seed=11)
    p, _ = compensated_probabilities(base_p(model), forest, True)
    return model.replace(forest=forest, firing_probabilities=p.to(model.firing_probabilities.dtype))


def families(model, small: bool) -> dict:
    n = model.num_features
    return {
        "std": std_family(model, 2.5),
        "hidden_dim": hidden_dim_family(model, 32 if small else 512),
        "truncate": truncate_family(model, n // 4),
        "rel_p": rel_p_family(model, 0.5),
        "hierarchy": hierarchy_family(model, *(
            (16, (4, 12), 2, 0.75) if small else (16, (4, 32), 3, 0.75))),
    }
