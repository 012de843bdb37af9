"""Issue 8.2: broken or hostile model folders give a message naming the file and the problem.

One table drives every case through the Python API (`synthviz.load`) and the CLI (`synthviz stats`,
and `synthviz export --force` onto an earlier export once export lands). Each case checks the key
words, a non-zero exit with no traceback, and that the model loaded before and the earlier export
are untouched. Loading never writes, so the damaged folder's bytes must not change either.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import synthviz
from synthviz.errors import ModelFileError
from tests.reliability.helpers import (assert_cli_error, assert_model_unchanged, cli_fork,
                                       folder_digest, model_snapshot)

CFG = "synthetic_model_config.json"
W = "synthetic_model.safetensors"
H = "hierarchy.json"


# ---------------------------------------------------------------------------- damage helpers

def read_json(folder, name):
    return json.loads((folder / name).read_text())


def write_json(folder, name, obj):
    (folder / name).write_text(json.dumps(obj))


def edit_config(fn):
    def damage(folder):
        d = read_json(folder, CFG)
        fn(d)
        write_json(folder, CFG, d)
    return damage


def edit_hierarchy(fn):
    def damage(folder):
        d = read_json(folder, H)
        fn(d)
        write_json(folder, H, d)
    return damage


def edit_tensors(fn):
    def damage(folder):
        with safe_open(str(folder / W), framework="pt") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
        fn(t)
        save_file(t, str(folder / W))
    return damage


def write_bytes(name, data):
    def damage(folder):
        (folder / name).write_bytes(data)
    return damage


def sparse_file(name, size):
    """A file that reports `size` bytes without using the disk (a hole)."""
    def damage(folder):
        with open(folder / name, "wb") as fh:
            fh.truncate(size)
    return damage


def remove(name):
    return lambda folder: (folder / name).unlink()


def truncate_half(name):
    def damage(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    return damage


def header_claiming(n):
    return lambda folder: (folder / W).write_bytes(struct.pack("<Q", n) + b"{}" * 8)


def header_json(text: bytes):
    return lambda folder: (folder / W).write_bytes(struct.pack("<Q", len(text)) + text)


def not_regular(name):
    def damage(folder):
        (folder / name).unlink()
        os.symlink("/dev/zero", folder / name)  # reading it would never end
    return damage


def as_directory(name):
    def damage(folder):
        (folder / name).unlink()
        (folder / name).mkdir()
    return damage


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def first_node_with_children(h):
    stack = list(h["roots"])
    while stack:
        nd = stack.pop()
        if nd["children"]:
            return nd
        stack.extend(nd["children"])
    raise AssertionError("tiny model has no parent nodes")


def set_me_one_child(h):
    nd = first_node_with_children(h)
    nd["children"] = nd["children"][:1]
    nd["mutually_exclusive_children"] = True


def set_me_no_children(h):
    leaf = h["roots"][0]
    while leaf["children"]:
        leaf = leaf["children"][0]
    leaf["mutually_exclusive_children"] = True


def make_cycle(h):
    nd = first_node_with_children(h)
    nd["children"][0]["children"].append({"feature_index": nd["feature_index"], "children": []})


def make_duplicate(h):
    h["roots"][1]["feature_index"] = h["roots"][0]["feature_index"]


def deep_chain(folder):
    # a child of a child of ... 50000 deep: valid JSON that would blow the recursion limit
    text = '{"roots": [' + '{"feature_index": 0, "children": [' * 50000 + "]}" * 50000 + "]}"
    (folder / H).write_text(text)


def set_first_root(key, value):
    return edit_hierarchy(lambda h: h["roots"][0].__setitem__(key, value))


def mutate(name, fn):
    return edit_tensors(lambda t: t.__setitem__(name, fn(t[name])))


def with_value(pos, value):
    def fn(x):
        x = x.clone()
        x.view(-1)[pos] = value
        return x
    return fn


CASES = [
    # (id, damage, key words); every message must also name the file
    ("config-missing", remove(CFG), [CFG, "missing"]),
    ("weights-missing", remove(W), [W, "missing"]),
    ("config-not-json", write_bytes(CFG, b"{num_features: 3"), [CFG, "not valid JSON"]),
    ("config-binary", write_bytes(CFG, b"\xff\xfe\x00garbage"), [CFG, "not valid JSON"]),
    ("config-not-object", write_bytes(CFG, b"[1, 2, 3]"), [CFG, "JSON object"]),
    ("config-enormous", sparse_file(CFG, 50 << 20), [CFG, "too large"]),
    ("config-deeply-nested", write_bytes(CFG, ('{"seed": ' + nested(100_000) + "}").encode()),
     [CFG, "nested too deeply"]),
    ("config-not-regular", not_regular(CFG), [CFG, "not a regular file"]),
    ("config-is-dir", as_directory(CFG), [CFG, "not a regular file"]),
    ("config-unknown-prob-generator",
     edit_config(lambda d: d["firing_probability"].update(generator_name="poisson")),
     [CFG, "unknown firing probability generator", "poisson"]),
    ("config-unknown-magnitude-generator",
     edit_config(lambda d: d["mean_firing_magnitudes"].update(generator_name="gamma")),
     [CFG, "unknown magnitude generator", "gamma"]),
    ("config-no-generator-name",
     edit_config(lambda d: d["firing_probability"].pop("generator_name")),
     [CFG, "generator_name"]),
    ("config-extra-field", edit_config(lambda d: d.update(run_this="rm -rf /")),
     [CFG, "unknown field", "run_this"]),
    ("config-extra-nested-field", edit_config(lambda d: d["hierarchy"].update(colour="red")),
     [CFG, "hierarchy", "unknown field", "colour"]),
    ("config-extra-generator-field",
     edit_config(lambda d: d["firing_probability"].update(temperature=2)),
     [CFG, "unknown field", "temperature"]),
    ("config-missing-field", edit_config(lambda d: d.pop("hidden_dim")),
     [CFG, "missing field", "hidden_dim"]),
    ("config-missing-generator-field",
     edit_config(lambda d: d["mean_firing_magnitudes"].pop("start")),
     [CFG, "missing field", "start"]),
    ("config-wrong-type", edit_config(lambda d: d.update(hidden_dim="16")),
     [CFG, "hidden_dim", "integer"]),
    ("config-nan-token",
     lambda f: (f / CFG).write_text((f / CFG).read_text().replace('"max_prob": 0.4',
                                                                 '"max_prob": NaN')),
     [CFG, "max_prob", "finite"]),
    ("config-infinity-token",
     lambda f: (f / CFG).write_text((f / CFG).read_text().replace('"bias": 0.5',
                                                                 '"bias": Infinity')),
     [CFG, "bias", "finite"]),
    ("config-unknown-dtype", edit_config(lambda d: d.update(dtype="object")),
     [CFG, "dtype", "object"]),
    ("config-no-roots", edit_config(lambda d: d["hierarchy"].update(total_root_nodes=0)),
     [CFG, "total_root_nodes", "positive"]),
    ("config-size-disagrees", edit_config(lambda d: d.update(num_features=10**9)),
     [W, "feature_vectors", "shape"]),
    ("weights-truncated", truncate_half(W), [W, "truncated"]),
    ("weights-empty", write_bytes(W, b""), [W, "truncated"]),
    ("weights-garbage", write_bytes(W, random.Random(0).randbytes(4096)), [W, "corrupt"]),
    ("weights-header-claims-huge", header_claiming(1 << 40), [W, "corrupt", "claims"]),
    ("weights-header-past-end", header_claiming(4000), [W, "truncated"]),
    ("weights-header-not-json", header_json(b"{not json at all}"), [W, "corrupt", "header"]),
    ("weights-header-bad-entry", header_json(b'{"bias": {"dtype": "F32", "shape": "x"}}'),
     [W, "corrupt", "bias"]),
    ("weights-not-regular", not_regular(W), [W, "not a regular file"]),
    ("weights-wrong-shape", mutate("feature_vectors", lambda x: x[:, :8].contiguous()),
     [W, "feature_vectors", "shape"]),
    ("weights-wrong-bias-shape", mutate("bias", lambda x: torch.cat([x, x])),
     [W, "'bias'", "shape"]),
    ("weights-corr-rank-disagrees", mutate("correlation_factor", lambda x: x[:100].contiguous()),
     [W, "correlation_factor", "shape"]),
    ("weights-int-dtype", mutate("feature_vectors", lambda x: x.to(torch.int32)),
     [W, "feature_vectors", "dtype"]),
    ("weights-bool-dtype", mutate("firing_probabilities", lambda x: x > 0.1),
     [W, "firing_probabilities", "dtype"]),
    ("weights-missing-tensor", edit_tensors(lambda t: t.pop("bias")), [W, "missing tensor", "bias"]),
    ("weights-corr-without-diag", edit_tensors(lambda t: t.pop("correlation_diag")),
     [W, "missing tensor", "correlation_diag"]),
    ("weights-nan-vectors", mutate("feature_vectors", with_value(17, float("nan"))),
     [W, "feature_vectors", "NaN"]),
    ("weights-inf-bias", mutate("bias", with_value(3, float("inf"))), [W, "'bias'", "inf"]),
    ("weights-nan-probability", mutate("firing_probabilities", with_value(5, float("nan"))),
     [W, "firing_probabilities", "NaN"]),
    ("weights-inf-correlation", mutate("correlation_factor", with_value(0, float("-inf"))),
     [W, "correlation_factor", "inf"]),
    ("weights-probability-above-1", mutate("firing_probabilities", with_value(0, 1.5)),
     [W, "firing_probabilities", "outside [0, 1]"]),
    ("weights-negative-probability", mutate("firing_probabilities", with_value(9, -0.1)),
     [W, "firing_probabilities", "outside [0, 1]"]),
    ("weights-diag-not-positive", mutate("correlation_diag", with_value(2, 0.0)),
     [W, "correlation_diag", "positive"]),
    ("hierarchy-not-json", write_bytes(H, b'{"roots": [}'), [H, "not valid JSON"]),
    ("hierarchy-no-roots", write_bytes(H, b'{"trees": []}'), [H, "roots"]),
    ("hierarchy-enormous", sparse_file(H, 300 << 20), [H, "too large"]),
    ("hierarchy-deeply-nested", deep_chain, [H, "nested too deeply"]),
    ("hierarchy-not-regular", as_directory(H), [H, "not a regular file"]),
    ("hierarchy-index-out-of-range", set_first_root("feature_index", 300),
     [H, "feature_index 300", "out of range"]),
    ("hierarchy-index-negative", set_first_root("feature_index", -1), [H, "-1", "out of range"]),
    ("hierarchy-index-not-int", set_first_root("feature_index", "0"), [H, "integer"]),
    ("hierarchy-index-bool", set_first_root("feature_index", True), [H, "integer"]),
    ("hierarchy-duplicate", edit_hierarchy(make_duplicate), [H, "more than once"]),
    ("hierarchy-cycle", edit_hierarchy(make_cycle), [H, "more than once", "cycle"]),
    ("hierarchy-me-one-child", edit_hierarchy(set_me_one_child),
     [H, "mutually exclusive", "at least 2"]),
    ("hierarchy-me-no-children", edit_hierarchy(set_me_no_children),
     [H, "mutually exclusive", "at least 2"]),
    ("hierarchy-me-flag-not-bool", set_first_root("mutually_exclusive_children", "no"),
     [H, "mutually_exclusive_children", "true or false"]),
    ("hierarchy-node-not-object", edit_hierarchy(lambda h: h["roots"].append(5)),
     [H, "not an object"]),
    ("hierarchy-children-not-list", set_first_root("children", {"a": 1}), [H, "must be a list"]),
]

IDS = [c[0] for c in CASES]


def test_case_ids_are_unique():
    assert len(set(IDS)) == len(IDS)


@pytest.fixture(params=CASES, ids=IDS)
def damaged(request, tiny_copy):
    _, damage, words = request.param
    damage(tiny_copy)
    return tiny_copy, words


def test_api_names_file_and_problem(damaged, loaded_model):
    folder, words = damaged
    before_model = model_snapshot(loaded_model)
    before_files = {p.name: (p.lstat().st_size, p.is_file()) for p in folder.iterdir()}
    with pytest.raises(ModelFileError) as info:
        synthviz.load(folder, device="cpu")
    msg = str(info.value)
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    assert "\n" not in msg and len(msg) < 400, msg
    assert_model_unchanged(loaded_model, before_model)
    assert {p.name: (p.lstat().st_size, p.is_file()) for p in folder.iterdir()} == before_files


def test_cli_stats_one_line_error(damaged):
    folder, words = damaged
    res = cli_fork(["stats", str(folder), "--samples", "10", "--device", "cpu"])
    assert_cli_error(res, *words)


@pytest.mark.skipif(importlib.util.find_spec("synthviz.export") is None,
                    reason="synthviz/export.py has not landed")
def test_cli_export_keeps_earlier_export(damaged, loaded_model, tmp_path):
    folder, words = damaged
    earlier = tmp_path / "earlier-export"
    loaded_model.save(earlier)
    before = folder_digest(earlier)
    res = cli_fork(["export", str(folder), "--out", str(earlier), "--force", "--samples", "10",
                    "--device", "cpu"])
    assert_cli_error(res, *words)
    assert folder_digest(earlier) == before


def test_missing_folder(tmp_path):
    with pytest.raises(ModelFileError, match="no such model folder"):
        synthviz.load(tmp_path / "absent", device="cpu")
    assert_cli_error(cli_fork(["stats", str(tmp_path / "absent"), "--samples", "10"]),
                     "no such model folder", "absent")


def test_pristine_copy_loads(tiny_copy, loaded_model):
    # the control: the damage, not the copying, is what each case above detects
    m = synthviz.load(tiny_copy, device="cpu")
    assert torch.equal(m.feature_vectors, loaded_model.feature_vectors)
    assert m.forest == loaded_model.forest
