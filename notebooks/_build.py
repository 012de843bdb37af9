"""Writes the notebooks in this folder from the cell lists below, with no outputs.

    python notebooks/_build.py          # regenerate them all
    python notebooks/_build.py --check  # exit 1 when a committed notebook differs from this script

Editing the cells here (rather than in Jupyter) keeps the notebooks reviewable as plain Python and
guarantees they are committed stripped of outputs; tests/test_notebooks.py executes them.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent


def md(text: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(*parts: str):
    """One code cell from parts, each dedented on its own (so shared snippets can be prepended)."""
    return nbformat.v4.new_code_cell("\n\n".join(textwrap.dedent(p).strip("\n") for p in parts))


SETUP = """
import holoviews as hv
import panel as pn

hv.extension("bokeh")
pn.extension()

"""

# ---------------------------------------------------------------------------------------------
TOUR = [
    md("""
    # A tour of SynthSAEBench-16k

    SynthSAEBench-16k is a synthetic "world" for testing sparse autoencoders: 16,384 ground-truth
    features, each a unit direction in a 768-dimensional space, that fire with Zipfian
    probabilities, are correlated through a low-rank Gaussian copula, and sit in a forest of 128
    trees whose children are mutually exclusive (ME) and only fire under an active parent.

    This notebook loads the base model, samples it, and shows every statistic synthviz measures,
    with the same plots the app draws. Each section states what to look for and checks the number
    it shows.

    `N_SAMPLES` controls every sampled statistic. The default keeps the notebook under two minutes
    on a laptop CPU; raise it (for example to 1,000,000) for smooth histograms.
    """),
    code("""
    N_SAMPLES = 20_000    # raise for real use, e.g. 1_000_000
    SEED = 0              # sample seed: the same seed gives the same numbers
    """),
    code(SETUP, """
    import math
    import time

    import torch

    import synthviz
    from synthviz import plots  # noqa: F401  (the plot functions the app uses)
    from synthviz.stats import (CooccurrenceAccumulator, FiringAccumulator, InterferenceAccumulator,
                                L0Accumulator, MagnitudeAccumulator, collect, expected_l0,
                                forest_summary, select_features, superposition_stats, tree_table)
    """),
    md("""
    ## Load the base

    `synthviz.load("base")` builds the model from the paper's published configuration (seed 42,
    100 orthogonalization steps) exactly as `sae_lens.synthetic` does, and caches it on disk: the
    first call takes about 35 s on two cores, later calls about a second.
    """),
    code("""
    t0 = time.perf_counter()
    model = synthviz.load("base")
    print(f"loaded in {time.perf_counter() - t0:.1f} s")
    model
    """),
    md("""
    ## Sample once, measure everything

    The sampler returns only the active features of each sample (rows, columns, values), so every
    statistic below is a streaming accumulator fed batch by batch: a million samples never need to
    be in memory at once. One pass feeds all of them.
    """),
    code("""
    subtree = select_features(model, how="subtree", root=0)   # root 0 and its 84 descendants
    top = select_features(model, how="top", k=32)               # the 32 most frequent features
    acc = {
        "l0": L0Accumulator(first_k=4096),
        "firing": FiringAccumulator(model.num_features),
        "cooc_tree": CooccurrenceAccumulator(subtree),
        "cooc_top": CooccurrenceAccumulator(top),
        "interference": InterferenceAccumulator(model),
        "magnitudes": MagnitudeAccumulator(model.forest),
    }
    t0 = time.perf_counter()
    collect(model, N_SAMPLES, list(acc.values()), seed=SEED)
    stats = {k: a.result() for k, a in acc.items()}
    print(f"{N_SAMPLES:,} samples in {time.perf_counter() - t0:.1f} s")
    """),
    md("""
    ## L0: how many features are active per sample

    The paper reports an average L0 of about 34, and about 25 when only the first 4096 (most
    frequent) features are counted. The dotted markers are the analytic expectation computed from
    the probabilities, the hierarchy and ME without sampling.
    """),
    code("""
    l0 = stats["l0"]
    exp_l0, exp_l0_k = expected_l0(model, first_k=4096)
    print(f"L0: mean {l0.mean:.2f}, median {l0.median}, p5-p95 {l0.p5}-{l0.p95}; expected {exp_l0:.2f}")
    print(f"first-4096 L0: mean {l0.mean_first_k:.2f}; expected {exp_l0_k:.2f}")
    # the numbers sae_lens gives at this config (34.3-34.5, 25.0-25.2), within 5 standard errors
    assert abs(l0.mean - 34.4) < 0.1 + 5 * l0.se, l0.mean
    assert abs(l0.mean_first_k - 25.1) < 0.1 + 5 * l0.se_first_k, l0.mean_first_k
    plots.create_l0_plot(l0, expected=(exp_l0, exp_l0_k))
    """),
    md("""
    ## Firing frequencies

    Feature *i* fires with a Zipfian base probability (0.4 for feature 0 down to 5e-4). A child can
    only fire under an active parent, so its stored probability is compensated (divided by the
    parent's, and raised for ME losses) to keep its effective rate near its base probability. The
    rank plot shows the measured rate of every feature against the expected effective rate, on
    log-log axes; the band is the sampling noise.
    """),
    code("""
    fr = stats["firing"]
    # z: each feature's error in binomial standard errors of its expected rate
    frequent = fr.expected_rate > 0.01
    zmax = float(fr.z[frequent].abs().max())
    print(f"{int(frequent.sum())} features with expected rate > 1%: max |z| = {zmax:.2f}")
    print(f"feature 0: measured {fr.empirical_rate[0]:.4f}, expected {fr.expected_rate[0]:.4f}")
    assert zmax < 6, zmax
    plots.create_frequency_plot(fr)
    """),
    md("""
    ## Co-occurrence: ME siblings never fire together

    The heatmap shows one tree (root 0 and its descendants), coloured by log2 lift,
    P(i and j) / (P(i) P(j)). Children of an ME parent never co-fire, so their blocks sit at the
    bottom of the scale; a child and its parent co-fire whenever the child fires (strong positive
    lift). Hover for the ids and counts.
    """),
    code("""
    ct = stats["cooc_tree"]
    feats = [int(f) for f in ct.features]
    pos = {f: i for i, f in enumerate(feats)}
    forest = model.forest
    me_pairs = cofire = 0
    for parent in feats:
        if parent in forest.me:
            kids = [c for c in forest.children.get(parent, []) if c in pos]
            for a in kids:
                for b in kids:
                    if a < b:
                        me_pairs += 1
                        cofire += int(ct.counts[pos[a], pos[b]])
    child_ok = all(int(ct.counts[pos[c], pos[int(forest.parent[c])]]) == int(ct.counts[pos[c], pos[c]])
                   for c in feats if int(forest.parent[c]) in pos)
    print(f"{me_pairs} ME sibling pairs in this tree, co-firing {cofire} times in {ct.samples:,} samples")
    print(f"every child co-fires with its parent exactly as often as it fires: {child_ok}")
    assert me_pairs > 0 and cofire == 0 and child_ok
    plots.create_cooccurrence_plot(ct, measure="lift", title="Tree of feature 0 (log2 lift)")
    """),
    md("""
    The 32 most frequent features are mostly roots and depth-1 children. Off the hierarchy, the
    weak low-rank copula (rank 25, scale 0.1) adds small positive and negative correlations: phi
    shows them.
    """),
    code("""
    plots.create_cooccurrence_plot(stats["cooc_top"], measure="phi", title="Top 32 features (phi)")
    """),
    md("""
    ## The hierarchy

    128 trees, 4 children per parent, depth 3: 128 + 512 + 2048 + 8192 = 10,880 features in trees,
    the remaining 5,504 outside any tree. Every parent's children are mutually exclusive.
    """),
    code("""
    summary = forest_summary(model.forest, model.num_features)
    print(f"{summary.roots} roots, nodes per depth {summary.nodes_per_depth}, {summary.in_trees:,} in trees, "
          f"{summary.outside:,} outside, {summary.me_parents:,} ME parents, mean branching {summary.mean_branching}")
    assert len(model.forest.roots) == 128 and model.forest.num_nodes == 10_880
    plots.create_forest_summary_plot(summary)
    """),
    code("""
    table = tree_table(model.forest, 0, stats["firing"].empirical_rate)
    plots.create_tree_plot(table, title="Tree of feature 0, coloured by measured rate (ME parents ringed)")
    """),
    md("""
    ## Superposition

    16,384 directions in 768 dimensions cannot be orthogonal. rho_mm, the mean over features of the
    largest |cos| with any other feature, is about 0.15 (random unit vectors give 0.1485 at this
    size; the 100 orthogonalization steps barely move it). The histogram covers every one of the
    134 million pairs; the scatter puts each feature's worst overlap against its firing probability.
    """),
    code("""
    t0 = time.perf_counter()
    sup = superposition_stats(model.feature_vectors)
    print(f"rho_mm {sup.rho_mm:.4f}, mean |cos| {sup.mean_abs_cos:.4f}  ({time.perf_counter() - t0:.1f} s)")
    assert 0.13 < sup.rho_mm < 0.16, sup.rho_mm
    plots.create_cos_histogram(sup)
    """),
    code("""
    plots.create_max_cos_scatter(sup, stats["firing"].expected_rate)
    """),
    md("""
    ## Interference

    Reading feature *i* back with its own direction, `d_i . (x - bias)`, returns its true activation
    plus the leak from every other active feature. The histograms show that error for active and
    inactive features; the signal-to-interference ratio summarises it. For random directions the
    error std is about sqrt(sum_j E[a_j^2] rate_j / D), the dotted prediction.
    """),
    code("""
    inter = stats["interference"]
    print(f"readout error std: active features {inter.active_std:.3f}, inactive {inter.inactive_std:.3f}; "
          f"predicted for random directions {inter.predicted_std:.3f}")
    print(f"signal-to-interference ratio {inter.sir:.1f} ({inter.sir_db:.1f} dB), from {inter.samples:,} samples")
    # near-orthogonal random directions: the inactive readout noise matches the random-direction prediction
    assert abs(inter.inactive_std / inter.predicted_std - 1) < 0.1
    plots.create_interference_plot(inter)
    """),
    md("""
    ## Magnitudes

    An active feature's magnitude is relu(mu + sigma N(0, 1)) with mu from 5 (feature 0) down to 4,
    and children are rescaled by their parent's activation over its mean, which widens the
    distribution with depth.
    """),
    code("""
    plots.create_magnitude_plot(stats["magnitudes"])
    """),
    md("""
    ## Every plot the app draws, from one registry

    The app's tabs and this notebook draw from the same list, `synthviz.plots.PLOTS`: each entry
    is a name, the tab it appears on, and a pure function from a results snapshot to a plot.
    `results_for` measures a model the way the app does (one sampling pass, then expected rates,
    interference and the dictionary statistics). A new plot added to the registry shows up here
    and in the app without further changes.
    """),
    code("""
    from synthviz.app.results import results_for
    from synthviz.app.store import SampleSettings
    from synthviz.plots import PLOTS

    res = results_for(model, SampleSettings(samples=N_SAMPLES, seed=SEED))
    drawn = {spec.name: spec.create(res) for spec in PLOTS}
    shown = {name: el for name, el in drawn.items() if el is not None}
    print({tab: [s.name for s in PLOTS.for_tab(tab)] for tab in PLOTS.tabs()})
    # every plot that does not need a base to compare with draws (the *_base ones need one)
    assert set(shown) == {s.name for s in PLOTS if not s.name.endswith("_base")}, sorted(shown)
    hv.Layout([el.opts(title=f"{PLOTS.get(name).tab}: {name}") for name, el in shown.items()]).cols(2)
    """),
]

# ---------------------------------------------------------------------------------------------
FAMILIES = [
    md("""
    # The variation families

    Each variation changes one property of SynthSAEBench-16k and keeps everything else identical
    (the very same tensors, not regenerated ones). This notebook applies one variation per family,
    measures it against the base with the same sample seed, and says what changed and why.

    | family | setting | what it changes |
    |---|---|---|
    | firing-magnitude std | `std` | one constant magnitude std for every feature |
    | superposition | `hidden_dim` | a new dictionary at dimension D (orthogonalized like the base) |
    | truncation | `num_features` | keeps features 0..N-1 of everything |
    | relative firing probability | `rel_p` | multiplies the base probabilities by k |
    | hierarchy | `roots`, `branching`, `depth`, `me_portion`, ... | a new forest over the same features |

    `N_SAMPLES` sets the samples per model; raise it for real use. `HIDDEN_DIM` builds a new
    dictionary once (about 30 s for D=512 on two cores) and caches it on disk.
    """),
    code("""
    N_SAMPLES = 10_000   # per model; raise for real use, e.g. 500_000
    SEED = 0
    HIDDEN_DIM = 512     # the superposition demo (d-512); later runs load it from the disk cache
    """),
    code(SETUP, """
    import math
    import time

    from IPython.display import Markdown, display

    import synthviz
    from synthviz import plots  # noqa: F401
    from synthviz.stats import (CooccurrenceAccumulator, FiringAccumulator, L0Accumulator,
                                MagnitudeAccumulator, ValidityAccumulator, collect, forest_summary,
                                select_features, superposition_stats, tree_table)
    from synthviz.variations import Variation


    def measure(model, *extra):
        \"\"\"L0, firing rates, validity and any `extra` ("magnitudes", "cooc": the tree of feature 0),
        from one pass of N_SAMPLES with the notebook's seed (so every model sees the same draws).\"\"\"
        acc = {"l0": L0Accumulator(first_k=4096), "firing": FiringAccumulator(model.num_features),
               "validity": ValidityAccumulator()}
        if "magnitudes" in extra:
            acc["magnitudes"] = MagnitudeAccumulator()
        if "cooc" in extra:
            acc["cooc"] = CooccurrenceAccumulator(select_features(model, how="subtree", root=0))
        results = collect(model, N_SAMPLES, list(acc.values()), seed=SEED)
        out = dict(zip(acc, results))
        assert out["validity"].me_violations == 0 and out["validity"].orphan_children == 0
        return out


    def se_l0(stats):
        return stats["l0"].se   # standard error of the mean L0


    base = synthviz.load("base")
    base_stats = measure(base, "magnitudes", "cooc")
    base_sup = superposition_stats(base.feature_vectors, percentiles=())  # rho_mm and the histogram only
    print(f"base: L0 {base_stats['l0'].mean:.2f}, first-4096 L0 {base_stats['l0'].mean_first_k:.2f}, "
          f"rho_mm {base_sup.rho_mm:.4f}")
    """),
    # ---- std
    md("""
    ## 1. Firing-magnitude std (`std-0`)

    The base draws a per-feature magnitude std from a folded normal with mean 0.5. `std-0` sets every
    feature's std to 0: an active feature always fires at exactly its mean magnitude (between 4 and
    5), and because children are rescaled by parent activation over the parent's mean, which is now
    exactly 1, children also fire at their means. Which features fire is unchanged: the
    probabilities and the dictionary are the very same tensors, so L0 stays put.
    """),
    code("""
    std0 = Variation(std=0.0).apply(base)
    std0_stats = measure(std0, "magnitudes")
    assert std0.feature_vectors is base.feature_vectors and std0.firing_probabilities is base.firing_probabilities
    mb, ms = base_stats["magnitudes"], std0_stats["magnitudes"]
    display(Markdown(
        f"Active-magnitude std: base **{mb.std:.3f}**, std-0 **{ms.std:.3f}** "
        f"(what remains is the spread of the means, 4 to 5). "
        f"L0: base **{base_stats['l0'].mean:.2f}**, std-0 **{std0_stats['l0'].mean:.2f}** (unchanged)."))
    assert ms.std < 0.35 < mb.std
    assert abs(std0_stats["l0"].mean - base_stats["l0"].mean) < 5 * math.hypot(se_l0(std0_stats), se_l0(base_stats))
    (plots.create_magnitude_plot(mb).opts(title="base") +
     plots.create_magnitude_plot(ms).opts(title="std-0")).cols(2)
    """),
    # ---- hidden dim
    md("""
    ## 2. Superposition: hidden dimension (`d-512`)

    A new dictionary of 16,384 directions at D = 512, drawn with the base's seed conventions and
    orthogonalized with the base's settings; the bias is redrawn at D with the same norm.
    Probabilities, magnitudes, hierarchy and correlation are identical, so L0 does not move, but
    fewer dimensions force more overlap: rho_mm rises.
    """),
    code("""
    t0 = time.perf_counter()
    dsmall = Variation(hidden_dim=HIDDEN_DIM).apply(base)
    print(f"D={HIDDEN_DIM} dictionary ready in {time.perf_counter() - t0:.1f} s")
    dsmall_sup = superposition_stats(dsmall.feature_vectors, percentiles=())
    dsmall_stats = measure(dsmall)
    display(Markdown(
        f"rho_mm: base (D=768) **{base_sup.rho_mm:.4f}**, D={HIDDEN_DIM} **{dsmall_sup.rho_mm:.4f}**. "
        f"L0: base **{base_stats['l0'].mean:.2f}**, D={HIDDEN_DIM} **{dsmall_stats['l0'].mean:.2f}** "
        f"(same probabilities)."))
    assert dsmall.hidden_dim == HIDDEN_DIM and dsmall.firing_probabilities is base.firing_probabilities
    assert dsmall_sup.rho_mm > base_sup.rho_mm + 0.01
    plots.create_cos_histogram(dsmall_sup, base=base_sup)
    """),
    # ---- truncation
    md("""
    ## 3. Truncation (`n-4096`)

    Keeps features 0..4095 of everything: dictionary rows, stored probabilities, magnitudes,
    correlation rows, and the hierarchy pruned to those indices (a parent left with fewer than two
    children loses its ME flag). Because parents always have lower indices than their children, every
    kept child keeps its parent. The cut at 4096 also falls between sibling groups (the depth-3
    groups of four start at 2688), so no kept child loses a sibling, and the truncated model's L0
    equals the base's first-4096 L0 within sampling noise.
    """),
    code("""
    n4k = Variation(num_features=4096).apply(base)
    n4k_stats = measure(n4k)
    display(Markdown(
        f"N: **{n4k.num_features:,}**. L0: **{n4k_stats['l0'].mean:.2f}** against the base's "
        f"first-4096 L0 **{base_stats['l0'].mean_first_k:.2f}** and full L0 **{base_stats['l0'].mean:.2f}**."))
    assert n4k.num_features == 4096
    assert abs(n4k_stats["l0"].mean - base_stats["l0"].mean_first_k) < 5 * math.hypot(se_l0(n4k_stats), se_l0(base_stats))
    (plots.create_l0_plot(n4k_stats["l0"], base=base_stats["l0"]).opts(title="n-4096 against the base") +
     plots.create_frequency_plot(n4k_stats["firing"])).cols(2)
    """),
    # ---- rel_p
    md("""
    ## 4. Relative firing probability (`rel-p-0.5`)

    Multiplies the base firing probabilities by k = 0.5 before hierarchy compensation, then
    compensates as the base does and clamps to 1. The compensation ratios are unchanged, so each
    feature's effective rate, and with it L0, scales by about k.
    """),
    code("""
    half = Variation(rel_p=0.5).apply(base)
    half_stats = measure(half)
    ratio = half_stats["l0"].mean / base_stats["l0"].mean
    display(Markdown(
        f"L0: base **{base_stats['l0'].mean:.2f}**, rel-p-0.5 **{half_stats['l0'].mean:.2f}**: "
        f"ratio **{ratio:.3f}** (k = 0.5). Features clamped to p = 1: {half.provenance.probabilities_clamped or 0}."))
    assert abs(ratio - 0.5) < 0.04, ratio
    (plots.create_l0_plot(half_stats["l0"], base=base_stats["l0"]).opts(title="rel-p-0.5 against the base") +
     plots.create_frequency_plot(half_stats["firing"], base=base_stats["firing"])).cols(2)
    """),
    # ---- hierarchy
    md("""
    ## 5. Hierarchy

    A variation of the hierarchy builds a new forest over the same features (feature vectors and
    magnitudes stay identical) and re-compensates the probabilities for it. First the smallest
    change: the same trees with ME switched off (`me_portion=0`). Siblings may now fire together,
    and compensation only divides a child's probability by its parent's (there are no ME losses to
    make up); every child that passes its parent's gate survives, so L0 rises. Compare the trees
    of feature 0 (ME parents ringed) and the co-occurrence of siblings.
    """),
    code("""
    no_me = Variation(me_portion=0.0).apply(base)
    no_me_stats = measure(no_me, "cooc")


    def sibling_cofiring(model, cooc):
        \"\"\"Joint firings of sibling pairs inside the measured subtree, split by the parent's ME flag.\"\"\"
        pos = {int(f): i for i, f in enumerate(cooc.features)}
        out = {"ME parents": 0, "other parents": 0}
        for parent, kids in model.forest.children.items():
            kids = [k for k in kids if k in pos]
            key = "ME parents" if parent in model.forest.me else "other parents"
            out[key] += sum(int(cooc.counts[pos[a], pos[b]]) for a in kids for b in kids if a < b)
        return out


    cb, cn = sibling_cofiring(base, base_stats["cooc"]), sibling_cofiring(no_me, no_me_stats["cooc"])
    display(Markdown(
        f"ME parents: base **{len(base.forest.me):,}**, no-ME **{len(no_me.forest.me)}**. "
        f"In the tree of feature 0, siblings co-fired **{cb['ME parents'] + cb['other parents']}** times "
        f"in the base (all their parents are ME) and **{cn['other parents']:,}** times without ME "
        f"(in {N_SAMPLES:,} samples). "
        f"L0: base **{base_stats['l0'].mean:.2f}**, no-ME **{no_me_stats['l0'].mean:.2f}**."))
    assert no_me.feature_vectors is base.feature_vectors and len(no_me.forest.me) == 0
    assert cb["ME parents"] == 0 and cb["other parents"] == 0 and cn["other parents"] > 0
    assert no_me_stats["l0"].mean > base_stats["l0"].mean + 5
    (plots.create_tree_plot(tree_table(base.forest, 0, base_stats["firing"].empirical_rate), title="base: tree of 0") +
     plots.create_tree_plot(tree_table(no_me.forest, 0, no_me_stats["firing"].empirical_rate), title="no ME: tree of 0") +
     plots.create_cooccurrence_plot(base_stats["cooc"], title="base: tree of 0 (log2 lift)") +
     plots.create_cooccurrence_plot(no_me_stats["cooc"], title="no ME: tree of 0 (log2 lift)")).cols(2)
    """),
    md("""
    A different shape: 256 roots with a random 2 to 6 children per parent, depth 3. Generation
    stops when the features run out, so the forest now covers all 16,384 features (the base leaves
    5,504 outside any tree), and compensating for random sibling counts pushes some child
    probabilities to the clamp at 1 (reported in `provenance`).
    """),
    code("""
    shape = Variation(roots=256, branching=(2, 6), depth=3).apply(base)
    shape_stats = measure(shape)
    fb, fs = forest_summary(base.forest, base.num_features), forest_summary(shape.forest, shape.num_features)
    display(Markdown(
        f"Roots: base **{len(base.forest.roots)}**, new **{len(shape.forest.roots)}**; features in trees: "
        f"base **{base.forest.num_nodes:,}**, new **{shape.forest.num_nodes:,}**; clamped probabilities: "
        f"**{shape.provenance.probabilities_clamped or 0}**. L0: base **{base_stats['l0'].mean:.2f}**, "
        f"new **{shape_stats['l0'].mean:.2f}**; first-4096 L0 {base_stats['l0'].mean_first_k:.2f} against "
        f"{shape_stats['l0'].mean_first_k:.2f}."))
    assert len(shape.forest.roots) == 256 and shape.forest.num_nodes == shape.num_features
    (plots.create_forest_summary_plot(fs, base=fb) +
     plots.create_l0_plot(shape_stats["l0"], base=base_stats["l0"]).opts(title="new forest against the base")).cols(2)
    """),
    md("""
    ## Everything at once

    Variations compose: one `Variation` holds any mix, applied in a fixed order (seed, hidden dim,
    truncation, hierarchy, std, probabilities), and equals applying its parts in sequence.
    """),
    code("""
    mix = Variation(num_features=8192, std=0.1, rel_p=1.5)
    print(mix.describe())
    mixed = mix.apply(base)
    mixed_stats = measure(mixed, "magnitudes")
    display(Markdown(
        f"N **{mixed.num_features:,}**, L0 **{mixed_stats['l0'].mean:.2f}** (8192 features at 1.5 times the "
        f"probability), active-magnitude std **{mixed_stats['magnitudes'].std:.3f}**."))
    assert mixed.num_features == 8192 and mixed_stats["magnitudes"].std < mb.std
    plots.create_l0_plot(mixed_stats["l0"], base=base_stats["l0"]).opts(title="the mix against the base")
    """),
    md("""
    ## The same comparison with every plot the app draws

    `synthviz.plots.PLOTS` is the list of plots the app's tabs show; given a base, each plot
    draws the variation against it (here rel-p-0.5), as the app does with "compare to base".
    """),
    code("""
    from synthviz.app.results import results_for
    from synthviz.app.store import SampleSettings
    from synthviz.plots import PLOTS

    res = results_for(half, SampleSettings(samples=N_SAMPLES, seed=SEED), base=base)
    drawn = {spec.name: spec.create(res) for spec in PLOTS}
    assert all(el is not None for el in drawn.values()), [n for n, el in drawn.items() if el is None]
    assert abs(res.stats.l0.mean / res.base_stats.l0.mean - 0.5) < 0.04
    hv.Layout([el.opts(title=f"{PLOTS.get(name).tab}: {name}") for name, el in drawn.items()
               if name in ("l0", "frequencies", "cooccurrence", "cooccurrence_base")]).cols(2)
    """),
]

# ---------------------------------------------------------------------------------------------
CONTROLLER = [
    md("""
    # The live controller, inline

    The app (`bash scripts/serve.sh`) is a `param` controller plus views. The very same
    `Controller` renders in a notebook: move the sliders in the sidebar and the plots redraw, as in
    the served app. Below, the controller is also driven from code, which is how to script a sweep.

    Settings changes run on a background thread (the latest request wins), so setting a parameter
    returns at once; `controller.wait()` blocks until the plots are up to date, and
    `controller.results` holds the model and statistics the views show.
    """),
    code("""
    N_SAMPLES = 8_192    # samples per redraw; raise for real use (the app's slider goes to 1M)
    """),
    code(SETUP, """
    from synthviz.app import Controller, Explorer
    """),
    code("""
    controller = Controller(samples=N_SAMPLES)   # starts on the base model
    assert controller.wait(timeout=300), controller.status
    Explorer(controller=controller)
    """),
    md("""
    ## By hand

    The cell above shows the whole explorer: pick a preset, or move *relative p*, *constant std*,
    *num features*, the hierarchy settings, then watch the cards and plots. (In a static copy of
    this notebook, such as the one in CI, the widgets are not live.)

    ## From code

    Every slider is a parameter. Setting one, or several at once with `param.update`, requests a
    recomputation; the rendered view above follows.
    """),
    code("""
    base_cards = dict(controller.results.cards)
    print("base:", {k: round(v, 3) if isinstance(v, float) else v for k, v in base_cards.items()})

    controller.param.update(rel_p=0.5)
    assert controller.wait(timeout=300), controller.status
    half_cards = dict(controller.results.cards)
    print("rel_p=0.5:", {k: round(v, 3) if isinstance(v, float) else v for k, v in half_cards.items()})
    ratio = half_cards["L0"] / base_cards["L0"]
    print(f"L0 ratio {ratio:.3f} (expected about 0.5)")
    assert abs(ratio - 0.5) < 0.05, ratio
    assert abs(base_cards["L0"] - 34.4) < 1.0, base_cards["L0"]
    """),
    md("""
    A preset sets the sliders. `std-0` makes every feature fire at its mean magnitude; the
    controller reports the preset's settings, and the magnitude plot collapses to spikes.
    """),
    code("""
    controller.preset = "std-0"
    assert controller.wait(timeout=300), controller.status
    print(controller.status)
    print({k: getattr(controller, k) for k in ("std_mode", "std", "rel_p", "num_features")})
    assert controller.std_mode == "constant" and controller.std == 0.0
    """),
    md("""
    ## A scripted sweep

    The same parameters drive a sweep: L0 against rel_p, read from the controller's results.
    """),
    code("""
    import holoviews as hv

    controller.preset = "base"
    points = []
    for k in (0.25, 0.5, 1.0, 1.5):
        controller.rel_p = k
        assert controller.wait(timeout=300), controller.status
        points.append((k, controller.results.cards["L0"]))
    print(points)
    slopes = [l0 / k for k, l0 in points]
    assert max(slopes) / min(slopes) < 1.15, slopes  # L0 scales about linearly with k
    hv.Curve(points, "rel_p", "L0").opts(title="L0 against rel_p", width=500, height=300) * \\
        hv.Scatter(points, "rel_p", "L0").opts(size=8)
    """),
    md("""
    The rendered explorer at the top now shows the last sweep point. Any single view can also be
    shown on its own next to custom widgets: `pn.Row(controller.param.rel_p, Explorer(controller=controller).tabs)`.
    """),
    code("""
    pn.Row(pn.Param(controller, parameters=["rel_p", "std_mode", "std"], show_name=False))
    """),
]

# ---------------------------------------------------------------------------------------------
EXPORT = [
    md("""
    # Export a variation and push it to the Hub

    A synthviz model saves in exactly the format `sae_lens.synthetic.SyntheticModel` reads: the
    config JSON, a safetensors file, and `hierarchy.json`, plus a model card. This notebook chooses
    a configuration, exports it, loads it back with sae_lens, checks that sae_lens sees the same
    model, and shows how to push it.
    """),
    code("""
    N_SAMPLES = 8_192          # samples for the model card's numbers and the check; raise for real use
    SAE_LENS_SAMPLES = 2_048   # samples drawn with sae_lens's (dense, slower) sampler for the check
    OUT = "exports/rel-p-0.5-std-0.1"
    PUSH_REPO_ID = None        # e.g. "you/synth-sae-bench-variations"; None never uploads
    PUSH_PATH = "rel-p-0.5-std-0.1"
    """),
    code(SETUP, """
    import json
    import math
    import os
    import socket
    from pathlib import Path

    import torch
    from IPython.display import Markdown, display

    import synthviz
    from synthviz import plots  # noqa: F401
    from synthviz.export import export_model, push_folder
    from synthviz.stats import L0Accumulator, collect, entries_from_dense
    from synthviz.variations import Variation
    """),
    md("""
    ## Choose a configuration

    Any mix of the variation families applies to any source (a preset, a folder, a Hub id). Here:
    half the firing probability and a constant magnitude std of 0.1, on the base.
    """),
    code("""
    variation = Variation(rel_p=0.5, std=0.1)
    model = variation.apply(synthviz.load("base"))
    print(variation.describe())
    model
    """),
    md("""
    ## Export

    `export_model` writes the three files sae_lens reads plus a `README.md` model card with the
    measured L0, first-4096 L0 and rho_mm. The config it writes must be truthful: sae_lens
    regenerates the per-feature magnitudes and the compensated firing probabilities from it (on
    load for the copula, after `.to()` for everything), so they must come out the same.
    `export_check` says whether they do; a model that would not is refused unless
    `allow_inexact=True`.
    """),
    code("""
    from synthviz.export import export_check

    print(export_check(model))
    folder = export_model(model, OUT, force=True, samples=N_SAMPLES)
    print(sorted(p.name for p in folder.iterdir()))
    cfg = json.loads((folder / "synthetic_model_config.json").read_text())
    print(json.dumps({k: cfg[k] for k in ("num_features", "hidden_dim", "std_firing_magnitudes", "seed")}, indent=1))
    display(Markdown((folder / "README.md").read_text().split("---", 2)[-1]))
    """),
    md("""
    ## Load it back with sae_lens and compare

    The stored tensors must be identical, the magnitudes sae_lens regenerates from the config must
    equal synthviz's, and samples drawn by sae_lens's own sampler must have the same L0.
    """),
    code("""
    import logging
    from sae_lens.synthetic import SyntheticModel

    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    sl = SyntheticModel.load_from_disk(str(folder))
    checks = {
        "feature_vectors": torch.equal(sl.feature_dict.feature_vectors.detach().cpu(), model.feature_vectors.cpu()),
        "bias": torch.equal(sl.feature_dict.bias.detach().cpu(), model.bias.cpu()),
        "firing_probabilities": torch.equal(sl.activation_generator.firing_probabilities.cpu(),
                                            model.firing_probabilities.cpu()),
        "mean_magnitudes": torch.allclose(sl.activation_generator.mean_firing_magnitudes.cpu(),
                                          model.mean_magnitudes.cpu()),
        "std_magnitudes": torch.allclose(sl.activation_generator.std_firing_magnitudes.cpu(),
                                         model.std_magnitudes.cpu()),
    }
    print(checks)
    assert all(checks.values()), checks
    """),
    code("""
    # sae_lens's samples, fed to the same L0 statistic synthviz uses
    torch.manual_seed(0)
    sl_acc = L0Accumulator(first_k=4096)
    for start in range(0, SAE_LENS_SAMPLES, 1024):
        b = min(1024, SAE_LENS_SAMPLES - start)
        _, feats = sl.sample_with_features(b)
        sl_acc.update(*entries_from_dense(feats))
    sv_acc = L0Accumulator(first_k=4096)
    collect(model, N_SAMPLES, [sv_acc], seed=0)
    a, b = sl_acc.result(), sv_acc.result()
    display(Markdown(f"L0: sae_lens **{a.mean:.2f}** ({a.samples:,} samples), synthviz **{b.mean:.2f}** "
                     f"({b.samples:,} samples); first-4096: {a.mean_first_k:.2f} against {b.mean_first_k:.2f}."))
    assert abs(a.mean - b.mean) < 5 * math.hypot(a.se, b.se), (a.mean, b.mean)
    assert abs(b.mean - 0.5 * 34.4) < 1.0, b.mean
    plots.create_l0_plot(a, base=b).opts(title="sae_lens samples (filled) against synthviz samples (outline)")
    """),
    md("""
    ## Push to the Hub

    `push_folder` uploads the folder with your normal Hugging Face login (`hf auth login` or
    `HF_TOKEN`); the token is never printed. The command-line equivalent is
    `synthviz push exports/rel-p-0.5-std-0.1 --repo-id you/synth-variants --path rel-p-0.5-std-0.1`.
    Anyone can then load it with
    `SyntheticModel.from_pretrained("you/synth-variants", model_path="rel-p-0.5-std-0.1")`, or
    `synthviz.load("you/synth-variants:rel-p-0.5-std-0.1")`.

    The cell below uploads only when the Hub is reachable and `PUSH_REPO_ID` is set (private by
    default). Offline, as in CI, it is skipped and says so: it checks `HF_HUB_OFFLINE` and then
    tries one connection to huggingface.co with a 2-second timeout, no retries.
    """),
    code("""
    def hub_reachable(timeout=2.0):
        \"\"\"False when HF_HUB_OFFLINE is set or huggingface.co does not answer within `timeout` s.\"\"\"
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            return False
        try:
            socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
            return True
        except OSError:
            return False


    if not hub_reachable():
        print("offline (HF_HUB_OFFLINE is set or huggingface.co is unreachable): push skipped.")
    elif PUSH_REPO_ID is None:
        print("the Hub is reachable, but PUSH_REPO_ID is None: set it to a repo you can write to "
              "and run this cell again to upload.")
    else:
        url = push_folder(folder, PUSH_REPO_ID, path_in_repo=PUSH_PATH, private=True)
        print("pushed:", url)
    """),
]

SAE_LENS = [
    md("""
    # The SAE lens: an SAE against the ground truth

    SynthSAEBench exists to measure whether sparse autoencoders recover known features. This
    notebook trains a small BatchTopK SAE with sae_lens's `train_toy_sae` on a small variation of
    the 16k base (on the CPU, about a minute), evaluates it with sae_lens's metrics streamed
    through synthviz's sparse sampler, and then looks beyond the means: recovery per feature
    against firing rate, a hierarchy tree coloured by recovery with absorption on its edges, the
    SAE-against-truth cosine heatmap, the same SAE under a distribution shift, and the app's SAE
    tab.
    """),
    code("""
    N_SAMPLES = 20_000         # evaluation samples; raise (e.g. 100_000) for real use
    TRAIN_SAMPLES = 150_000    # toy-SAE training samples
    D_SAE = 256                # latents
    SAE_DIR = "saes/toy-batchtopk"   # the app's SAE tab lists folders under ./saes
    """),
    code(SETUP, """
    import dataclasses

    import numpy as np
    import torch
    from IPython.display import Markdown, display

    import synthviz
    from synthviz.app.sae_tab import SAEView
    from synthviz.plots.sae_registry import SAE_PLOTS
    from synthviz.sae import compare_saes
    from synthviz.sae.compare import headline_table
    from synthviz.sae.results import evaluate_for_view
    from synthviz.sae.view_stats import most_absorbed_root, sae_tree_table
    from synthviz.sae.training import train_toy_sae
    from synthviz.variations import Variation


    def show_table(cols):
        names = cols["name"]
        lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for key, vals in cols.items():
            if key != "name":
                lines.append(f"| {key} | " + " | ".join(f"{v:.4g}" for v in vals) + " |")
        display(Markdown("\\n".join(lines)))
    """),
    md("""
    ## A small variation

    The first 1,024 features of the base (their trees kept) in a new 64-dimensional dictionary:
    small enough to train an SAE on in a minute, with the base's hierarchy and firing structure.
    The SAE's k is set to the model's measured L0.
    """),
    code("""
    base = synthviz.load("base", device="cpu")
    small = Variation(num_features=1024, hidden_dim=64).apply(base)
    _, feats = small.sample_with_features(4096, seed=0)
    true_l0 = feats._nnz() / 4096
    K = max(2, round(true_l0))
    print(small, f"L0 {true_l0:.2f} -> k = {K}")
    """),
    md("""
    ## Train a toy SAE with sae_lens

    `synthviz.sae.training.train_toy_sae` hands synthviz's sampler to sae_lens's own
    `train_toy_sae`, saves the result with `save_inference_model` (a BatchTopK SAE is saved as
    `jumprelu`) and loads it back with synthviz's native loader.
    """),
    code("""
    sae = train_toy_sae(small, D_SAE, K, training_samples=TRAIN_SAMPLES, out=SAE_DIR)
    sae
    """),
    md("""
    ## Evaluate it

    The headline numbers are sae_lens's (`eval_sae_on_synthetic_data`'s definitions). The
    decoder-only ones (MCC, uniqueness) are computed exactly as sae_lens does, so they are equal
    to its functions' values. `evaluate_for_view` is the evaluation the app's SAE tab runs: it
    returns an `SAEResults` snapshot holding the evaluation (`current`, and `base` when
    compared), the model's forest and the SAE-against-truth |cos| block the views draw.
    """),
    code("""
    from sae_lens.synthetic.evals import feature_uniqueness, mean_correlation_coefficient

    res = evaluate_for_view(sae, {"current": small}, N_SAMPLES, seed=1, name="toy SAE")
    result = res.current
    show_table(headline_table({"toy SAE": result}))
    assert result.mcc == mean_correlation_coefficient(sae.W_dec, small.feature_vectors)
    assert result.uniqueness == feature_uniqueness(sae.W_dec, small.feature_vectors)
    assert 0 < result.classification["f1_score"] <= 1 and result.sae_l0 > 0
    result.summary
    """),
    md("""
    ## Absorption on the trees

    Per parent->child edge (SAELens proposal #729): `P(parent latent fires | parent on, child
    off) - P(parent latent fires | parent on, child on)`. A positive gap means the child
    absorbs the parent's latent. The tree the views show first is the one holding the largest
    gap; its table (one row per node: the best latent's F1, and the gap of the edge into it) is
    the statistic the tree plot draws.
    """),
    code("""
    root = most_absorbed_root(small.forest, result.edges)
    tree = sae_tree_table(small.forest, root, result.features, result.edges)
    worst = int(np.nanargmax(tree["gap"])) if np.isfinite(tree["gap"]).any() else 0
    print(f"tree of root {root}: {len(tree['feature'])} nodes; largest gap "
          f"{tree['gap'][worst]:.3f} on the edge {tree['parent'][worst]} -> {tree['feature'][worst]}")
    """),
    md("""
    ## The views, from the SAE plot registry

    The app's SAE tab and this notebook draw from the same list,
    `synthviz.plots.sae_registry.SAE_PLOTS`: each entry is a name and a pure function from an
    `SAEResults` snapshot (and the view settings `metric` and `tree_root`) to a plot.

    - **Recovery per feature:** each feature at its firing rate and the F1 of its best latent
      (by decoder |cos|) as its detector. Rare features are the ones an SAE misses.
    - **The tree:** coloured by recovery, with the absorption gap on its edges (`tree_root=None`:
      the most absorbed tree).
    - **The cosine heatmap:** the best-matched latents' decoder rows against their features,
      ordered by match; a good SAE shows a bright diagonal.

    A new plot registered there shows up here and in the app without further changes.
    """),
    code("""
    print({spec.name: spec.doc for spec in SAE_PLOTS})
    drawn = {spec.name: spec.create(res, metric="f1", tree_root=None) for spec in SAE_PLOTS}
    assert not any(isinstance(el, hv.Text) for el in drawn.values()), drawn  # no placeholder
    hv.Layout(list(drawn.values())).cols(1)
    """),
    md("""
    ## Distribution shift, and several SAEs on one model

    The same SAE on a variation that doubles every firing rate (same dictionary, so MCC is
    unchanged while the sample-dependent numbers move); then two SAEs on the same samples.
    """),
    code("""
    shifted = Variation(rel_p=2.0).apply(small)
    shift = evaluate_for_view(sae, {"current": shifted, "base": small}, N_SAMPLES, seed=2)
    show_table(headline_table({"trained on": shift.base, "rel_p x2": shift.current}))
    assert shift.current.true_l0 > 1.4 * shift.base.true_l0
    assert shift.current.mcc == shift.base.mcc
    SAE_PLOTS.get("sae_recovery").create(shift, metric="f1")  # the base as binned means
    """),
    code("""
    stricter = dataclasses.replace(sae, threshold=sae.threshold * 1.5)
    two = compare_saes(small, {"toy SAE": sae, "thresholds x1.5": stricter}, N_SAMPLES, seed=3)
    show_table(headline_table(two))
    assert two["thresholds x1.5"].sae_l0 < two["toy SAE"].sae_l0
    """),
    md("""
    ## The app's SAE tab

    The same view the app shows: it lists SAE folders under `./saes` (or `SYNTHVIZ_SAE_ROOT`),
    evaluates on a thread with a progress bar and a Cancel button, and compares with the base.
    """),
    code("""
    view = SAEView(root="saes", model=shifted, base=small, samples=N_SAMPLES)
    view.sae_folder = "toy-batchtopk"
    view.run().join()
    assert view.results.current.mcc == result.mcc
    view
    """),
]

NOTEBOOKS = {
    "01_synthsaebench_16k_tour.ipynb": TOUR,
    "02_variation_families.ipynb": FAMILIES,
    "03_live_controller.ipynb": CONTROLLER,
    "04_export_to_hub.ipynb": EXPORT,
    "05_sae_lens.ipynb": SAE_LENS,
}


def build(cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                  "language": "python"},
                   "language_info": {"name": "python"}}
    nb.cells = cells
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating gives identical files
    return nb


def _content(nb) -> list[tuple]:
    # what a reader sees, independent of the nbformat version that serialized the file
    return [(c.cell_type, c.source, tuple(c.get("outputs", ())), c.get("execution_count"))
            for c in nb.cells]


def main(argv: list[str]) -> int:
    stale = []
    for name, cells in NOTEBOOKS.items():
        nb = build(cells)
        path = HERE / name
        if "--check" in argv:
            if not path.exists() or _content(nbformat.read(path, as_version=4)) != _content(nb):
                stale.append(name)
        else:
            path.write_text(nbformat.writes(nb) + "\n")
    if stale:
        print("stale notebooks (run python notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
