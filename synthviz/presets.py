"""Named models: the base SynthSAEBench-16k, its v1 form and the variations (the seed's 17,
as published on v1, the same 17 on the v2 base as `v2/<name>`, and two later misc models).

The base is built locally from its published config (100 orthogonalization steps) and cached on
disk, keyed by config and seed, so later starts load it from the cache in a second or so. Every
other preset is a `Variation` applied to another preset (`Preset.base`): cheap ones (std,
truncation, rel-p, hierarchy) share the base's tensors; new dictionaries (d-*) and L0 solutions
(misc) are cached on disk.

The seed's variations were made from `decoderesearch/synth-sae-bench-16k-v1`, whose hierarchy has
`scale_children_by_parent` false, so the plain names (`std-2.5`, ...) build on `base-v1`; the
`v2/` names apply the same variation to `base` (the paper config, with child rescaling).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from synthviz.builds import build_cached
from synthviz.cache import model_cache_dir
from synthviz.config import base_config
from synthviz.device import resolve_device
from synthviz.errors import ConfigError
from synthviz.variations import Variation

log = logging.getLogger(__name__)

FAMILIES = {
    "base": "the base model",
    "firing-magnitude-stdev": "constant firing-magnitude std for every feature",
    "superposition": "hidden dimension changed (new dictionary; more or less superposition)",
    "truncate-num-features": "the first N features of the base",
    "relative-firing-probability": "base firing probabilities times k (L0 scales by about k)",
    "misc": "new hierarchy with firing probabilities solved for a target L0 and first-4096 L0",
}
V2_PREFIX = "v2/"


@dataclass(frozen=True)
class Preset:
    """A named model: `variation` applied to the preset named `base` (None: `base` itself).

    `description` says what the model is; `assumptions` says what synthviz had to assume to
    build it (which base version, what a reconstruction fills in), for the app to show.
    """
    name: str
    family: str
    description: str
    variation: Variation | None = None
    base: str = "base"
    assumptions: str = ""

    @property
    def base_version(self) -> str:
        """'v1' or 'v2': the published base this preset builds on."""
        return "v1" if self.base == "base-v1" or self.name == "base-v1" else "v2"


_ON_V1 = ("Built on base-v1 (scale_children_by_parent false), like the published variation, "
          "which was made from decoderesearch/synth-sae-bench-16k-v1; {v2} is the same "
          "variation on the v2 base.")
_ON_V2 = ("The seed's {name} applied to the v2 base (the paper config, with child rescaling), "
          "not the published model: the published one was made from v1 (the preset {name}).")


def _misc_common(rescale: bool) -> str:
    words = ("child rescaling on (v2's setting)" if rescale
             else "child rescaling off (v1's setting, as the published variations)")
    return ("Reconstruction: the published config is not available here, so the name "
            "defines the targets (roots-branching, ME portion, L0, first-4096 L0). "
            "Everything not named is the base's: dictionary, magnitudes, copula, seed, "
            f"ME from depth 0 with no max depth, probability compensation on, {words}. "
            "Firing probabilities are Zipfian with the base's exponent 0.5; max_prob and "
            "min_prob are solved by synthviz.l0_target so that the sampled L0 and first-4096 "
            "L0 hit the targets.")


def _seed_specs() -> list[tuple[str, str, str, dict]]:
    """(name, family, description, variation fields) of the seed's 17 variations."""
    out = []
    for s in (0.0, 0.1, 0.5, 2.5):
        out.append((f"std-{s:g}", "firing-magnitude-stdev",
                    f"Every feature's firing-magnitude std is the constant {s:g} (the base draws "
                    "a per-feature std from a folded normal with mean 0.5). Nothing else "
                    "changes.", dict(std=s)))
    for d in (512, 1024, 1536):
        out.append((f"d-{d}", "superposition",
                    f"Hidden dim {d} (base 768): a new 16384 x {d} dictionary drawn with the "
                    f"base's seed (equal to what sae_lens builds with hidden_dim={d}), "
                    "orthogonalized with the base's settings (100 Adam steps, lr 3e-4); the bias "
                    "is redrawn at this dim with norm 0.5. Probabilities, magnitudes, hierarchy "
                    "and correlation are the base's.", dict(hidden_dim=d)))
    for n in (4096, 8192):
        out.append((f"n-{n}", "truncate-num-features",
                    f"The first {n} features of the base: dictionary rows, probabilities, "
                    "magnitudes, correlation rows, and the hierarchy pruned to indices below "
                    f"{n} (a parent left with fewer than 2 children loses ME).",
                    dict(num_features=n)))
    for k in (0.1, 0.25, 0.5, 0.75, 1.25, 1.5):
        out.append((f"rel-p-{k:g}", "relative-firing-probability",
                    f"Base firing probabilities (before hierarchy compensation) times {k:g}, "
                    "then compensated as the base is and clamped to 1 (the clamped count is in "
                    f"the model's provenance). L0 scales by about {k:g}.", dict(rel_p=k)))
    out.append(("hierarchy-128-128-me-1.0-l0-40-4kl0-25", "misc",
                "128 roots with 128 children each, max depth 1 (the children already use every "
                "feature, 128 + 127 x 128 = 16384, so the last root gets none and a larger depth "
                "gives the same forest), all parents ME; target L0 40, first-4096 L0 25.",
                dict(roots=128, branching=128, depth=1, me_portion=1.0, target_l0=40.0,
                     target_l0_first_k=25.0)))
    out.append(("rand-hierarchy-16-4-32-me-0.75-l0-30-4kl0-24", "misc",
                "16 roots, each parent with a uniformly random 4 to 32 children, max depth 3 "
                "(chosen as the base's depth; the 16384 features run out during depth 3, so a "
                "larger depth gives the same forest), 75% of eligible parents ME; target L0 30, "
                "first-4096 L0 24.",
                dict(roots=16, branching=(4, 32), depth=3, me_portion=0.75, target_l0=30.0,
                     target_l0_first_k=24.0)))
    return out


def _seed_presets() -> list[Preset]:
    v1, v2 = [], []
    for name, family, description, fields in _seed_specs():
        misc = family == "misc"
        v1.append(Preset(name, family, description, Variation(**fields), base="base-v1",
                         assumptions=(_misc_common(False) + " " if misc else "")
                         + _ON_V1.format(v2=V2_PREFIX + name)))
        v2.append(Preset(V2_PREFIX + name, family, description, Variation(**fields), base="base",
                         assumptions=(_misc_common(True) + " " if misc else "")
                         + _ON_V2.format(name=name)))
    return v1 + v2


_LATER = ("Made after the seed's README, which does not list it; assumed to build on the v2 "
          "base (the paper config, with child rescaling). ")

_BASES = [
    Preset("base", "base",
           "SynthSAEBench-16k as the paper configures it (v2): 16384 features, D=768, Zipfian p "
           "(0.5, 0.4 to 5e-4), 128 roots x 4-way x depth 3 with ME and child rescaling, "
           "rank-25 copula, 100 orthogonalization steps, seed 42.",
           assumptions="Built locally from the published config (the v2 fix: "
                       "scale_children_by_parent true)."),
    Preset("base-v1", "base",
           "The base without child rescaling (scale_children_by_parent false), like the v1 "
           "upload decoderesearch/synth-sae-bench-16k-v1 that the seed's variations were made "
           "from. Same tensors as the base.", Variation(rescale=False),
           assumptions="v1 is the base config with scale_children_by_parent false (the SAELens "
                       "docs' description of v1)."),
]
_LATER_PRESETS = [
    Preset("hierarchy-1024-8-1l-me-1.0-l0-36-4kl0-25", "misc",
           "1024 roots with 8 children each, depth 1 ('1l' read as max depth 1: 9216 features "
           "in trees, the other 7168 free), all parents ME; target L0 36, first-4096 L0 25.",
           Variation(roots=1024, branching=8, depth=1, me_portion=1.0, target_l0=36.0,
                     target_l0_first_k=25.0),
           assumptions=_LATER + _misc_common(True)),
    Preset("hierarchy-128-2-6l-me-1.0-l0-34-4kl0-25", "misc",
           "128 roots, binary branching, depth 6 ('6l' read as max depth 6: 128 x 127 = 16256 "
           "features in trees, 128 free), all parents ME; target L0 34, first-4096 L0 25.",
           Variation(roots=128, branching=2, depth=6, me_portion=1.0, target_l0=34.0,
                     target_l0_first_k=25.0),
           assumptions=_LATER + _misc_common(True)),
]
_SEED = _seed_presets()
# order: the bases, the seed's 17 as published (v1), the later misc, the 17 on v2
PRESETS: dict[str, Preset] = {p.name: p for p in [
    *_BASES, *[p for p in _SEED if not p.name.startswith(V2_PREFIX)], *_LATER_PRESETS,
    *[p for p in _SEED if p.name.startswith(V2_PREFIX)]]}


_BASE_MEMO: dict[tuple[str, str], object] = {}


def _base_model(device, progress):
    """The base, loaded once per process and device; callers get a copy sharing its tensors, so
    switching presets never reloads or duplicates the base's 50 MB."""
    cfg = base_config()
    key = (model_cache_dir({"config": cfg.to_dict()}).name, str(resolve_device(device)))
    base = _BASE_MEMO.get(key)
    if base is None:
        base = build_cached(cfg, device=device, progress=progress)
        base.provenance = base.provenance.replace(preset="base")
        _BASE_MEMO.clear()  # keep one: a second device's copy would double the memory
        _BASE_MEMO[key] = base
    return base.replace()


def load_preset(name: str, device="auto", progress: Callable | None = None):
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; run `synthviz presets` for the list")
    preset = PRESETS[name]
    if preset.base != "base":
        base = load_preset(preset.base, device=device, progress=progress)
    else:
        base = _base_model(device, progress)
    if preset.variation is None:
        return base
    model = preset.variation.apply(base, progress=progress)
    # see Provenance.exact_preset
    model.provenance = model.provenance.replace(preset=name,
                                                preset_variation=model.provenance.variation)
    return model

