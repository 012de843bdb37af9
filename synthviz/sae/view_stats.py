"""Statistics the SAE views draw, derived from an evaluation: the SAE-against-truth |cos| block
ordered by match (`cosine_block`), one tree's per-node recovery and per-edge absorption
(`sae_tree_table`), and the tree to show first (`most_absorbed_root`). Pure functions of an
`SAEEvalResult`'s tables, the SAE's decoder and the model's forest and dictionary."""

from __future__ import annotations

import numpy as np
import torch

from synthviz.sae.metrics import abs_cosines

MAX_SIDE = 120


def _np(x) -> np.ndarray:
    """Tensors, lists and arrays alike as a CPU numpy array."""
    if x is None:
        return np.zeros(0)
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def cosine_block(W_dec: torch.Tensor, features: torch.Tensor, latent_best_feature: np.ndarray,
                 latent_best_cos: np.ndarray, side: int = MAX_SIDE) -> dict:
    """The |cos| block of the `side` best-matched latents (by decoder |cos|) against their best
    features, latents ordered by that |cos| (descending) and features in the same order; each
    feature appears once (the latent matching it best). Keys latents, features, cos [l, f]."""
    order = np.argsort(-np.asarray(latent_best_cos), kind="stable")
    feats, lats = [], []
    for lat in order:
        f = int(latent_best_feature[lat])
        if f not in feats:
            feats.append(f)
            lats.append(int(lat))
        if len(lats) >= side:
            break
    block = abs_cosines(W_dec[torch.as_tensor(lats)].float(),
                        features[torch.as_tensor(feats)].to(W_dec.device).float())
    return {"latents": np.array(lats), "features": np.array(feats),
            "cos": block.cpu().numpy()}


def sae_tree_table(forest, root: int, features: dict, edges: dict, metric: str = "f1") -> dict:
    """One tree in depth-first order: columns feature, parent (-1 at the root), depth, score (the
    feature's `metric` from `SAEEvalResult.features`), gap (the absorption gap of the edge into
    the node, NaN where unmeasured) and rate."""
    nodes, parents = [], []
    stack = [(int(root), -1)]
    while stack:
        node, par = stack.pop()
        nodes.append(node)
        parents.append(par)
        stack.extend((int(c), node) for c in reversed(forest.children.get(node, [])))
    gap_of = {}
    if edges:
        for c, g in zip(_np(edges["child"]), _np(edges["gap"])):
            gap_of[int(c)] = float(g)
    score = _np(features[metric])
    depth = _np(features["depth"])
    return {"feature": np.array(nodes), "parent": np.array(parents),
            "depth": depth[nodes], "score": score[nodes],
            "gap": np.array([gap_of.get(n, np.nan) for n in nodes]),
            "rate": _np(features["rate"])[nodes]}


def most_absorbed_root(forest, edges: dict) -> int | None:
    """The root whose tree holds the largest absorption gap (a useful first tree to show); the
    first root when no edge was measured; None without a forest."""
    if forest is None or not edges or len(edges.get("gap", ())) == 0:
        return None if forest is None or not forest.roots else int(forest.roots[0])
    gap = np.nan_to_num(_np(edges["gap"]), nan=-np.inf)
    node = int(_np(edges["parent"])[int(np.argmax(gap))])
    par = _np(forest.parent)
    while par[node] >= 0:
        node = int(par[node])
    return node
