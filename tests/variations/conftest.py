"""Fixtures for the variation tests: the small model (built once) and the cached 16k base."""

from __future__ import annotations

import copy
import logging

import pytest

from tests.conftest import SMALL_CONFIG

logging.getLogger("synthviz").setLevel(logging.ERROR)


def small_cfg_dict(**changes):
    d = copy.deepcopy(SMALL_CONFIG)
    d.update(changes)
    return d


@pytest.fixture(scope="session")
def small_model():
    from synthviz.config import ModelConfig
    from synthviz.model import build_model

    return build_model(ModelConfig.from_dict(small_cfg_dict()), device="cpu")


@pytest.fixture(scope="session")
def base16k():
    import synthviz

    return synthviz.load("base", device="cpu")
