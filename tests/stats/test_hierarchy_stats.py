"""Issue 5, hierarchy: the forest summary and tree tables agree with hierarchy.json as sae_lens
wrote it, and the validity counters are zero on samples and count injected violations."""

from __future__ import annotations

import json

import pytest
import torch

from synthviz.errors import ConfigError
from synthviz.stats import (FiringAccumulator, ValidityAccumulator, forest_summary, tree_table,
                            validity_counts)


def _walk(folder):
    """(node dict, depth, parent) for every node of sae_lens's hierarchy.json."""
    data = json.loads((folder / "hierarchy.json").read_text())
    out, stack = [], [(r, 0, -1) for r in data["roots"]]
    while stack:
        nd, d, par = stack.pop()
        out.append((nd, d, par))
        stack.extend((c, d + 1, nd["feature_index"]) for c in nd["children"])
    return data, out


def test_forest_summary_matches_hierarchy_json(small, sae_lens_small):
    _, folder = sae_lens_small
    data, nodes = _walk(folder)
    s = forest_summary(small.forest, small.num_features)
    depth_counts = {}
    for _, d, _ in nodes:
        depth_counts[d] = depth_counts.get(d, 0) + 1
    assert s.roots == len(data["roots"]) == 24
    assert s.root_ids == [r["feature_index"] for r in data["roots"]]
    assert s.nodes_per_depth == [depth_counts[d] for d in range(len(depth_counts))]
    assert s.max_depth == max(depth_counts) == 3
    assert s.in_trees == len(nodes) and s.outside == small.num_features - len(nodes)
    me = [nd for nd, _, _ in nodes if nd["mutually_exclusive_children"]]
    assert s.me_parents == len(me) and sum(s.me_parents_per_depth) == len(me)
    sizes = []
    for r in data["roots"]:
        count, stack = 0, [r]
        while stack:
            nd = stack.pop()
            count += 1
            stack.extend(nd["children"])
        sizes.append(count)
    assert s.tree_sizes.tolist() == sizes
    parents = [nd for nd, _, _ in nodes if nd["children"]]
    assert s.parents == len(parents) and s.leaves == len(nodes) - len(parents)
    assert s.max_branching == max(len(nd["children"]) for nd in parents)


def test_tree_table(small, sv_entries):
    _, rows, cols, vals, n = sv_entries
    acc = FiringAccumulator(small)
    acc.update(rows, cols, vals, n)
    rates = acc.result().empirical_rate
    f = small.forest
    root = f.roots[5]
    t = tree_table(f, root, rates)
    k = len(t["feature"])
    assert all(len(col) == k for col in t.values())
    assert t["feature"][0] == root and t["parent"][0] == -1 and t["depth"][0] == 0
    pos = {x: i for i, x in enumerate(t["feature"])}
    for i in range(1, k):
        p = t["parent"][i]
        assert pos[p] < i and t["depth"][i] == t["depth"][pos[p]] + 1  # breadth-first
    assert k == int(forest_summary(f).tree_sizes[5])
    for i, x in enumerate(t["feature"]):
        assert t["me"][i] == (x in f.me)
        assert t["rate"][i] == pytest.approx(float(rates[x]))
        assert t["children"][i] == len(f.children.get(x, []))
    # a subtree table starts at any node
    sub = tree_table(f, t["feature"][1])
    assert sub["parent"][0] == -1 and sub["depth"][0] == 1
    with pytest.raises(ConfigError, match="not in any"):
        tree_table(f, small.num_features - 1)


@pytest.mark.parametrize("source", ["synthviz", "sae_lens"])
def test_validity_zero_on_samples(small, sv_entries, sl_entries, source):
    rows, cols, vals, n = sv_entries[1:] if source == "synthviz" else sl_entries
    acc = ValidityAccumulator()
    acc.bind(small)
    acc.update(rows, cols, vals, n)
    res = acc.result()
    assert res.me_violations == 0 and res.orphan_children == 0 and res.samples == n


def test_validity_counts_injected_violations(small):
    f = small.forest
    parent, kids = f.me_groups()[0]
    leaf = next(c for c in range(small.num_features)
                if int(f.parent[c]) >= 0 and int(f.parent[f.parent[c]]) >= 0)
    # sample 0: parent with two ME children (1 violation); sample 1: leaf without its parent
    # (1 orphan, and its parent is absent too if it has one: counted once per active child)
    rows = torch.tensor([0, 0, 0, 1])
    cols = torch.tensor([parent, kids[0], kids[1], leaf])
    me, orphans = validity_counts(f, rows, cols, small.num_features)
    assert me == 1 and orphans == 1
    assert validity_counts(None, rows, cols, small.num_features) == (0, 0)


def test_forest_summary_needs_a_forest():
    with pytest.raises(ConfigError, match="no hierarchy"):
        forest_summary(None, 10)
