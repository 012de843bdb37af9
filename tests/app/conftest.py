"""Fixtures for the app tests: a small saved model to use as a source, and the served app."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests import serving
from tests.conftest import SMALL_CONFIG


@pytest.fixture(scope="session")
def small_source(tmp_path_factory) -> str:
    """A 2048 x 64 model (hierarchy, ME, copula) saved as a folder: a fast `source`."""
    from synthviz.config import ModelConfig
    from synthviz.model import build_model

    model = build_model(ModelConfig.from_dict(copy.deepcopy(SMALL_CONFIG)), device="cpu")
    folder = tmp_path_factory.mktemp("app_small") / "small"
    model.save(folder)
    return str(folder)


# ---------------------------------------------------------------------------- the served app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def export_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="session")
def served_app(export_root):
    """`python -m panel serve app` on a free port; yields (url, process)."""
    url, proc = serving.start("app", "app", export_root.parent / "panel-serve.log",
                              env={"SYNTHVIZ_EXPORT_ROOT": str(export_root)})
    yield url, proc
    serving.stop(proc)
