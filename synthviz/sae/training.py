"""Training a toy SAE on any synthviz model with sae_lens's own `train_toy_sae`
(needs `pip install "synthviz[sae]"`). synthviz's sparse sampler feeds the trainer: the data
iterator asks `activations_generator(batch)` for features and passes them to `feature_dict`; here
the first returns the batch's hidden activations and the second passes them through."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from synthviz.sae.loading import INSTALL_HINT, SAEFileError, load_sae_folder, sae_lens_available
from synthviz.sae.weights import SAE

ARCHITECTURES = ("batchtopk", "topk", "matryoshka", "standard", "jumprelu")


class _Hidden(torch.nn.Module):
    """Stands in for sae_lens's activation generator: a batch of the model's hidden activations."""

    def __init__(self, model, seed: int | None, total: int, progress):
        super().__init__()
        self.model, self.total, self.progress, self.done = model, total, progress, 0
        self.gen = None if seed is None else torch.Generator(model.device).manual_seed(seed)

    def forward(self, batch_size: int) -> torch.Tensor:
        h = self.model.sample(batch_size, generator=self.gen)
        self.done += batch_size
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
        return h


class _PassThrough(torch.nn.Module):
    """Stands in for sae_lens's feature dictionary (only its device and `eval` are read)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.feature_vectors = torch.zeros(1, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _training_sae(architecture: str, d_in: int, d_sae: int, k: int, device: str, **extra):
    import sae_lens as sl

    common = dict(d_in=d_in, d_sae=d_sae, device=device)
    if architecture == "batchtopk":
        return sl.BatchTopKTrainingSAE(sl.BatchTopKTrainingSAEConfig(k=k, **common, **extra))
    if architecture == "topk":
        return sl.TopKTrainingSAE(sl.TopKTrainingSAEConfig(k=k, **common, **extra))
    if architecture == "matryoshka":
        widths = extra.pop("matryoshka_widths", None) or [max(1, d_sae // 4), d_sae]
        return sl.MatryoshkaBatchTopKTrainingSAE(sl.MatryoshkaBatchTopKTrainingSAEConfig(
            k=k, matryoshka_widths=widths, **common, **extra))
    if architecture == "standard":
        return sl.StandardTrainingSAE(sl.StandardTrainingSAEConfig(**common, **extra))
    return sl.JumpReLUTrainingSAE(sl.JumpReLUTrainingSAEConfig(**common, **extra))


def train_toy_sae(model, d_sae: int, k: int = 16, *, architecture: str = "batchtopk",
                  training_samples: int = 300_000, batch_size: int = 1024, lr: float = 3e-3,
                  seed: int = 0, out: str | Path | None = None, progress=None,
                  **sae_options) -> SAE:
    """Train an SAE on `model`'s activations with sae_lens's `train_toy_sae`, save it with
    `save_inference_model` (into `out`, or a temporary folder) and load it back natively."""
    if architecture not in ARCHITECTURES:
        raise SAEFileError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if not sae_lens_available():
        raise SAEFileError(f"training an SAE needs sae_lens, which is not installed; {INSTALL_HINT}")
    from sae_lens.synthetic import train_toy_sae as sl_train

    torch.manual_seed(seed)  # sae_lens initialises weights from the global generator
    dev = str(model.device)
    sae = _training_sae(architecture, model.hidden_dim, d_sae, k, dev, **sae_options)
    sl_train(sae, _PassThrough(model.device), _Hidden(model, seed, training_samples, progress),
             training_samples=training_samples, batch_size=batch_size, lr=lr, device=dev)
    if out is not None:
        sae.save_inference_model(str(out))
        return load_sae_folder(out, device=model.device)
    with tempfile.TemporaryDirectory(prefix="synthviz-sae-") as tmp:
        sae.save_inference_model(tmp)
        return load_sae_folder(tmp, device=model.device, label=f"toy {architecture} SAE")
