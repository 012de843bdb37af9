"""synthviz: explore SynthSAEBench-16k and its variations.

    import synthviz
    model = synthviz.load("base")           # or a preset, a folder, or "owner/repo[:subfolder]"
    hidden, features = model.sample_with_features(4096)
"""

from synthviz.config import ModelConfig, base_config
from synthviz.errors import ConfigError, HubError, ModelFileError, SynthvizError
from synthviz.io import load_folder
from synthviz.sources import load
from synthviz.model import SynthModel, build_model

__all__ = ["ModelConfig", "SynthModel", "base_config", "build_model", "load", "load_folder",
           "ConfigError", "HubError", "ModelFileError", "SynthvizError"]
__version__ = "0.1.0"
