"""Fixtures for the reliability tests: one tiny model built once and saved in sae_lens format."""

from __future__ import annotations

import logging
import shutil

import pytest

from tests.reliability.helpers import tiny_config

logging.getLogger("synthviz").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    from synthviz.config import ModelConfig
    from synthviz.model import build_model

    model = build_model(ModelConfig.from_dict(tiny_config()), device="cpu")
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model.save(folder)
    return folder


@pytest.fixture
def tiny_copy(tiny_model_folder, tmp_path):
    """A fresh, writable copy of the tiny model folder for one test to damage."""
    dest = tmp_path / "model"
    shutil.copytree(tiny_model_folder, dest)
    return dest


@pytest.fixture
def loaded_model(tiny_model_folder):
    import synthviz

    return synthviz.load_folder(tiny_model_folder, device="cpu")
