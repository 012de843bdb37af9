"""The README's generated tables: the preset table (scripts/preset_table.py) and the benchmark
summary (scripts/bench_summary.py, copied from benchmarks/RESULTS.md), never typed by hand.

Every preset has a row; the cheap presets (base, base-v1, std-*, n-*, rel-p-*) are re-measured
here with the script's fixed seed and sample count and must match the README row string for string.
The expensive rows (d-*, the L0-targeted misc presets) are produced by the same code path.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHEAP = re.compile(r"^(v2/)?(base|base-v1|std-.*|n-\d+|rel-p-.*)$")


def _script():
    spec = importlib.util.spec_from_file_location("preset_table", ROOT / "scripts" / "preset_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pt = _script()


def _readme_rows():
    return pt.readme_rows((ROOT / "README.md").read_text())


def test_readme_has_a_row_for_every_preset_in_order():
    from synthviz.presets import PRESETS

    assert list(_readme_rows()) == list(PRESETS)


def test_section_replacement_keeps_the_rest_of_the_readme():
    text = f"# t\nintro\n{pt.START}\nold\n{pt.END}\n## next\n"
    new = pt.replace_section(text, "| `a` | x |")
    assert new == f"# t\nintro\n{pt.START}\n| `a` | x |\n{pt.END}\n## next\n"
    assert pt.readme_rows(new) == {"a": "| `a` | x |"}
    with pytest.raises(SystemExit):
        pt.marked_section("no markers here")


def test_row_format_is_fixed():
    row = pt.format_row("std-0", "v1", "std", 16384, 768, {"l0": 34.449, "l0_first_k": 25.06,
                                                           "rho_mm": 0.14532})
    assert row == "| `std-0` | v1 | std | 16,384 | 768 | 34.4 | 25.1 | 0.145 |"


@pytest.fixture
def one_thread():
    # same numbers at any thread count; one thread is several times faster on a busy 2-core box
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_cheap_rows_match_the_script(one_thread):
    from synthviz.presets import PRESETS

    cheap = [n for n in PRESETS if CHEAP.match(n)]
    assert "base" in cheap and len(cheap) >= 2
    rows = _readme_rows()
    mismatched = {}
    for name in cheap:
        row = pt.preset_row(name)
        if rows.get(name) != row:
            mismatched[name] = (rows.get(name), row)
    assert not mismatched, ("README preset table is stale; run `python scripts/preset_table.py "
                            f"--write`: {mismatched}")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_benchmark_summary_matches_results():
    bs = _load("bench_summary")
    if not bs.RESULTS.is_file():
        pytest.skip("benchmarks/RESULTS.md not written yet")
    body = bs.render(bs.RESULTS.read_text())
    assert bs.section((ROOT / "README.md").read_text()) == body, \
        "README benchmark summary is stale; run `python scripts/bench_summary.py --write`"


def test_benchmark_summary_keeps_the_goal_columns():
    bs = _load("bench_summary")
    results = ("# B\n\n## Goals (issue 3)\n\n| work | sae_lens | synthviz | ratio | goal | reached | x |\n"
               "|---|---|---|---|---|---|---|\n| sampling | 1 | 30 | 30x | >= 10x | yes | z |\n\n## Next\n"
               "- CPU: Test CPU (2 cores); more\n")
    body = bs.render(results)
    assert body.splitlines()[:3] == ["| work | sae_lens | synthviz | ratio | goal | reached |",
                                     "|---|---|---|---|---|---|",
                                     "| sampling | 1 | 30 | 30x | >= 10x | yes |"]
    assert "Test CPU (2 cores)" in body
