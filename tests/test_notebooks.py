"""Executes every notebook in notebooks/ top to bottom with this interpreter's kernel.

A notebook fails the test when any cell raises (its own asserts on the numbers it shows included),
when it writes an error output, or when it shows no HoloViews/Bokeh plot at all. Notebooks run in a
temporary directory, so exports they write do not land in the repo.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
EXPECTED = {"01_synthsaebench_16k_tour", "02_variation_families", "03_live_controller",
            "04_export_to_hub", "05_sae_lens"}
# Each notebook is meant to finish in under 2 minutes; this only catches a hung kernel.
CELL_TIMEOUT_S = 600
PLOT_MIMES = ("application/vnd.holoviews_exec.v0+json", "application/vnd.bokehjs_exec.v0+json")


def _builder():
    spec = importlib.util.spec_from_file_location("nb_build", NOTEBOOK_DIR / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_is_present_and_stripped():
    assert {p.stem for p in NOTEBOOKS} >= EXPECTED
    # the committed notebooks are exactly what notebooks/_build.py writes (no hand edits, no outputs)
    assert _builder().main(["--check"]) == 0, "run `python notebooks/_build.py` and commit"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, f"{path.name} has no code cells"
        # the first code cell holds the knob that raises sample counts for real use
        assert "N_SAMPLES" in code[0].source, f"{path.name}: no N_SAMPLES in the first code cell"
        for cell in code:
            assert not cell.outputs and cell.execution_count is None, \
                f"{path.name} is committed with outputs; run `python notebooks/_build.py`"
        # "each notebook asserts a number it shows": at least one assert statement
        assert any("assert " in c.source for c in code), f"{path.name} asserts nothing"


def _extra_requirements(project: dict, extra: str) -> list[str]:
    """The requirements an extra brings, with synthviz's own extras (synthviz[a,b]) expanded."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out = []
    for spec in project["optional-dependencies"][extra]:
        req = Requirement(spec)
        if canonicalize_name(req.name) == canonicalize_name(project["name"]):
            for sub in sorted(req.extras):
                out += _extra_requirements(project, sub)
        else:
            out.append(spec)
    return out


def _installed_closure(specs: list[str]) -> set[str]:
    """Distribution names the specs bring in, following installed packages' requirements."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [(Requirement(s), "") for s in specs]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for x in [""] + sorted(req.extras):
            todo += [(Requirement(r), x) for r in requires]
    return {k.split("[")[0] for k in seen}


def _notebook_imports() -> dict[str, set[str]]:
    """{top-level module: notebooks importing it}, from the committed notebooks' code cells."""
    import ast
    import sys

    found: dict[str, set[str]] = {}
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            src = "\n".join(x for x in cell.source.splitlines()
                            if not x.lstrip().startswith(("%", "!")))  # magics, shell
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "synthviz":
                        found.setdefault(top, set()).add(path.stem)
    return found


def test_notebook_imports_come_with_the_notebook_extra():
    """The README's venv (scripts/serve.sh: the `notebook` extra) runs every notebook: each
    module a notebook imports belongs to a distribution that synthviz's dependencies plus that
    extra bring in. (Notebook 04 imported sae_lens, which only the test extra had.)"""
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import packages_distributions

    from packaging.utils import canonicalize_name

    pyproject = NOTEBOOK_DIR.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    assert "EXTRAS=notebook" in (NOTEBOOK_DIR.parent / "scripts" / "serve.sh").read_text()
    have = _installed_closure(project["dependencies"] + _extra_requirements(project, "notebook"))
    dists = packages_distributions()
    imports = _notebook_imports()
    assert {"torch", "sae_lens"} <= set(imports)  # the parse sees the imports that matter
    for module, notebooks in sorted(imports.items()):
        owners = {canonicalize_name(d) for d in dists.get(module, [])}
        assert owners, f"{module} (imported by {sorted(notebooks)}) is not installed here"
        assert owners & have, (f"{sorted(notebooks)} import {module} ({sorted(owners)}), which "
                               "the `notebook` extra does not install")


def _errors(nb) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
            elif out.get("output_type") == "stream" and out.get("name") == "stderr" \
                    and "Traceback" in out.get("text", ""):
                found.append(f"cell {i}: traceback on stderr:\n{out['text'][-2000:]}")
    return found


def _has_plot(nb) -> bool:
    for cell in nb.cells:
        if "extension(" in cell.source:  # loading the extension emits the same mime type
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if any(m in data for m in PLOT_MIMES):
                return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    # One torch thread in the kernel: on a shared 2-core CI machine, two OpenMP threads that wait
    # on each other made these notebooks about 3x slower (102 s against 34 s for the tour).
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"{path.name} raised:\n{str(exc)[-4000:]}")
    elapsed = time.perf_counter() - start
    assert not _errors(nb), "\n".join(_errors(nb))
    assert _has_plot(nb), f"{path.name} displayed no HoloViews/Bokeh output"
    # keep the executed copy for inspection when something looks wrong
    (tmp_path / path.name).write_text(json.dumps(nb, indent=1))
    print(f"{path.name}: {elapsed:.1f} s")
