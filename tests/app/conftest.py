"""Fixtures for the app tests: a small saved model to use as a source, and the served app."""

from __future__ import annotations

import copy

import pytest

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
