"""`hierarchy.json` nodes as sae_lens reads them: parsing with every check a hostile file needs,
the truth value of flags written as strings, features listed twice, and truncation.

Nodes stay plain dicts (`feature_index`, `feature_id`, `mutually_exclusive_children`,
`scale_children_by_parent`, `children`); `synthviz.hierarchy` flattens them into a `Forest`.
"""

from __future__ import annotations

from typing import Any

from synthviz.errors import ModelFileError

MAX_HIERARCHY_NODES = 10_000_000


# strings that mean what sae_lens reads them as: it takes a flag's truth value, so a non-empty
# string is true and "" is false
_TRUE_WORDS = frozenset({"true", "1", "yes", "on", "y", "t"})


def truth_value(v: Any, where: str) -> bool:
    """A config flag as sae_lens reads it (its truth value): booleans, 0 and 1, strings that
    mean their truth value ("true", "yes", ""), [] and {}. A string meaning false ("false", "0")
    or a non-empty list or object is refused: sae_lens would read it as true, and silently doing
    either misleads."""
    if isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)):
        return bool(v)
    if isinstance(v, str) and (v == "" or v.strip().lower() in _TRUE_WORDS):
        return bool(v)
    if isinstance(v, str):
        raise ModelFileError(f"{where} is the string {v[:40]!r}; sae_lens reads any non-empty "
                             f"string as true: write true or false")
    if isinstance(v, (list, dict)):
        if not v:  # [] and {}: false to sae_lens as to anyone
            return False
        kind = "list" if isinstance(v, list) else "object"
        raise ModelFileError(f"{where} is the {kind} {str(v)[:40]}; sae_lens reads any non-empty "
                             f"{kind} as true: write true or false")
    raise ModelFileError(f"{where}: expected true or false, got {str(v)[:40]!r}")


def _me_flag(v: Any, name: str, where: str) -> bool:
    """mutually_exclusive_children as sae_lens samples it (its truth value). A string whose
    meaning differs from its truth value ("false", "0", "no") is refused: sae_lens would make
    the children ME although the file says otherwise, and showing that silently misleads."""
    if v is None or isinstance(v, (bool, int, float)):
        return bool(v)
    if isinstance(v, str):
        if v == "" or v.strip().lower() in _TRUE_WORDS:
            return bool(v)
        raise ModelFileError(
            f"{where}: mutually_exclusive_children of {name} is the string {v[:40]!r}; sae_lens "
            f"reads any non-empty string as true (children mutually exclusive): write true or "
            f"false")
    if isinstance(v, (list, dict)):
        if not v:  # [] and {}: false to sae_lens as to anyone
            return False
        kind = "list" if isinstance(v, list) else "object"
        raise ModelFileError(
            f"{where}: mutually_exclusive_children of {name} is the {kind} {str(v)[:40]}; "
            f"sae_lens reads any non-empty {kind} as true (children mutually exclusive): write "
            f"true or false")
    raise ModelFileError(
        f"{where}: mutually_exclusive_children of {name} must be true or false, got {str(v)[:40]}")


def _scale_flag(v: Any, name: str, feature_kids: bool, where: str) -> tuple[bool, bool]:
    """(value, not_a_number) for scale_children_by_parent. sae_lens packs the flags of nodes
    with feature children into a bool tensor: a non-empty string or list there fails to load,
    and null or "" fails as soon as another node rescales (checked by the caller)."""
    if isinstance(v, (bool, int, float)):
        return bool(v), False
    if not v and (v is None or isinstance(v, (str, list, dict))):
        return False, feature_kids
    if not feature_kids:  # a leaf's flag is never read by sae_lens
        return False, False
    raise ModelFileError(
        f"{where}: scale_children_by_parent of {name} must be true or false, got {str(v)[:40]!r}"
        f" (sae_lens cannot load it either)")


def _repeat_message(f: int, where: str, top: int, first_top: int, anc: tuple | None) -> str:
    """Why a repeated feature_index is refused, as one line. sae_lens refuses an index in two
    top-level trees; within one tree it loads it, but its samplers disagree on it (the dense one
    gates and rescales once per occurrence, writes same-depth repeats through one index_put,
    which torch leaves undefined, and zeroes a feature listed twice in an ME group; the sparse
    one keeps only the last parent and group) and its compensation keeps the last occurrence."""
    if top != first_top:
        return (f"{where}: feature_index {f} appears more than once, in top-level trees "
                f"{first_top} and {top}; sae_lens refuses this too (a feature may belong to one "
                f"tree only)")
    while anc is not None and anc[0] != f:
        anc = anc[1]
    if anc is not None:  # sae_lens checks loops by node identity, which JSON cannot share
        return (f"{where}: feature_index {f} appears more than once, below itself (a cycle); "
                f"sae_lens misses such loops and would gate the feature by itself")
    return (f"{where}: feature_index {f} appears more than once, in two places of top-level tree "
            f"{top}; sae_lens loads it but its sampling of it is ill-defined (its dense and "
            f"sparse samplers can disagree), so it is refused")


def parse_nodes(d: Any, num_features: int, where: str) -> list[dict[str, Any]]:
    """Normalized node dicts (sae_lens's own hierarchy.json fields), validated, iteratively."""
    if not isinstance(d, dict) or not isinstance(d.get("roots"), list):
        raise ModelFileError(f"{where}: expected an object with a 'roots' list")
    out: list[dict[str, Any]] = []
    seen: dict[int, int] = {}  # feature -> top-level tree it was first seen in
    # (node, destination list, top-level tree, ancestors' features as a linked list)
    stack: list[tuple[Any, list, int, tuple | None]] = [
        (r, out, i, None) for i, r in reversed(list(enumerate(d["roots"])))]
    count = 0
    scaling: str | None = None  # a node whose truthy scale flag sae_lens packs
    unscalable: str | None = None  # a node whose null/"" scale flag sae_lens cannot pack
    while stack:
        nd, dest, top, anc = stack.pop()
        count += 1
        if count > MAX_HIERARCHY_NODES:
            raise ModelFileError(f"{where}: more than {MAX_HIERARCHY_NODES} nodes")
        if not isinstance(nd, dict):
            raise ModelFileError(f"{where}: a node is not an object: {str(nd)[:60]}")
        f = nd.get("feature_index")
        name = f"feature {f}" if f is not None else f"node {str(nd.get('id', ''))[:40]!r}"
        if f is not None:
            if isinstance(f, bool) or not isinstance(f, int):
                raise ModelFileError(f"{where}: feature_index must be an integer, got {f!r}")
            if not 0 <= f < num_features:
                raise ModelFileError(
                    f"{where}: feature_index {f} out of range for {num_features} features")
            if f in seen:
                raise ModelFileError(_repeat_message(f, where, top, seen[f], anc))
            seen[f] = top
        kids = nd.get("children", [])
        if not isinstance(kids, list):
            raise ModelFileError(f"{where}: children of {name} must be a list")
        feature_kids = any(isinstance(k, dict) and k.get("feature_index") is not None
                           for k in kids)
        me = _me_flag(nd.get("mutually_exclusive_children", False), name, where)
        scale, odd = _scale_flag(nd.get("scale_children_by_parent", False), name, feature_kids,
                                 where)
        if scale and feature_kids:
            scaling = scaling or name
        if odd:
            unscalable = unscalable or name
        if me and len(kids) < 2:
            raise ModelFileError(f"{where}: {name} has mutually exclusive children but only "
                                 f"{len(kids)} child(ren); ME needs at least 2")
        fid = nd.get("feature_id", nd.get("id"))
        node = {"feature_index": f, "mutually_exclusive_children": me,
                "scale_children_by_parent": scale, "feature_id": fid, "children": []}
        dest.append(node)
        below = (f, anc) if f is not None else anc
        stack.extend((k, node["children"], top, below) for k in reversed(kids))
    if scaling and unscalable:
        raise ModelFileError(
            f"{where}: scale_children_by_parent of {unscalable} is null or empty while {scaling} "
            f"rescales; sae_lens cannot load that mix: write true or false")
    return out


def truncate_nodes(nodes: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Drop features >= n with their subtrees; ME flags left with < 2 children are cleared."""
    def keep(nd):
        f = nd["feature_index"]
        if f is not None and f >= n:
            return None
        kids = [k for k in (keep(c) for c in nd["children"]) if k is not None]
        me = nd["mutually_exclusive_children"] and len(kids) >= 2
        return {**nd, "mutually_exclusive_children": me, "children": kids}
    return [k for k in (keep(r) for r in nodes) if k is not None]
