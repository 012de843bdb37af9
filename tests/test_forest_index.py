"""One forest index and one rate estimator: the tables sampling, the statistics and the L0 solver
share agree with the forest they come from, and the solver's estimate is the statistics' one."""

from __future__ import annotations

import itertools

import pytest
import torch

from synthviz.config import HierarchyConfig, ModelConfig
from synthviz.hierarchy import Forest, generate_forest
from synthviz.model import build_model
from synthviz.rate_maths import me_win_probability
from tests.conftest import SMALL_CONFIG


def _node(f, kids=(), me=False):
    return {"feature_index": f, "mutually_exclusive_children": me,
            "scale_children_by_parent": False, "children": list(kids)}


def _forests() -> dict[str, Forest]:
    hc = HierarchyConfig(total_root_nodes=6, branching_factor=(2, 4), max_depth=3,
                         mutually_exclusive_portion=0.7)
    org = {"roots": [
        _node(None, [_node(0, [_node(2), _node(3), _node(None, [_node(4), _node(5)], me=True)],
                           me=True), _node(1)], me=True),
        _node(6, [_node(7, [_node(9), _node(10)], me=True), _node(8)], me=True)]}
    return {"generated": generate_forest(200, hc, seed=3), "organizational": Forest.from_dict(org, 12)}


@pytest.mark.parametrize("name", ["generated", "organizational"])
def test_index_tables_hold_every_group_and_level(name):
    forest = _forests()[name]
    ix = forest.index
    assert forest.index is ix  # built once
    assert sorted(map(str, ix.groups)) == sorted(map(str, forest.me_groups()))
    seen = []
    for depth, g in enumerate(ix.me_levels):
        if g is None:
            continue
        pars, sib, valid = g
        for q, row, ok in zip(pars.tolist(), sib, valid):
            assert (int(forest.depth[q]) if q >= 0 else 0) == depth
            seen.append((q, row[ok].tolist()))
    assert seen == [(q, list(k)) for q, k in ix.groups]
    assert [f.tolist() for f, _ in ix.parent_levels] == forest.levels[1:]
    assert ix.nodes.tolist() == [f for lv in forest.levels for f in lv]
    members = torch.cat([ix.nodes[t] for _, _, t in ix.rate_buckets]).sort().values
    assert members.tolist() == sorted(c for _, k in forest.me_groups() for c in k)
    base = torch.linspace(0.5, 0.05, forest.num_features, dtype=torch.float64)
    assert torch.allclose(ix.compensate(base), base * forest.probability_correction(base),
                          rtol=1e-12)


def test_sampling_tables_live_in_the_index_not_in_the_forest_dict():
    model = build_model(ModelConfig.from_dict(dict(SMALL_CONFIG, num_features=300,
                                                   orthogonalization=None)), device="cpu")
    model.sample_entries(8, seed=0)
    assert ("sampling", torch.device("cpu")) in model.forest.index._memo
    assert not any(k.startswith("_device") or k.startswith("_synthviz") for k in vars(model.forest))


def test_me_win_probability_is_exact():
    pi = torch.tensor([[0.3, 0.9, 0.05, 0.5, 0.0]], dtype=torch.float64)
    valid = torch.tensor([[True, True, True, True, False]])
    got = me_win_probability(pi, valid)[0]
    for i in range(4):
        others = [pi[0, j].item() for j in range(4) if j != i]
        want = 0.0
        for on in itertools.product([0, 1], repeat=3):
            pr = 1.0
            for o, q in zip(on, others):
                pr *= q if o else 1 - q
            want += pr / (1 + sum(on))
        assert abs(float(got[i]) - want) < 1e-14


def test_the_solver_estimate_is_the_statistics_estimate_without_correlation():
    from synthviz.l0_target import estimate_l0, estimate_rates
    from synthviz.stats import expected_l0, expected_rates

    d = dict(SMALL_CONFIG, num_features=600, orthogonalization=None)
    correlated = build_model(ModelConfig.from_dict(d), device="cpu")
    plain = correlated.replace(correlation_factor=None, correlation_diag=None)
    assert torch.equal(estimate_rates(correlated), expected_rates(plain))
    assert estimate_l0(plain, 100) == expected_l0(plain, 100)
