"""The SAE lens: load a sparse autoencoder saved in sae_lens's format and evaluate it against the
ground truth of any synthviz model (sae_lens's metrics, and per feature, latent, edge and tree).

    from synthviz.sae import load_sae, evaluate_sae
    sae = load_sae("path/to/sae")          # or "owner/name:subfolder" on the Hub
    result = evaluate_sae(model, sae, n_samples=100_000)
    result.to_dict()                       # sae_lens's keys, classification nested
    views = evaluate_for_view(sae, {"current": model}, 100_000)   # what the SAE views draw
"""

from synthviz.sae.compare import compare_models, compare_saes, shift_table
from synthviz.sae.evaluate import SAEAccumulator, SAEEvalResult, evaluate_sae
from synthviz.sae.loading import SAEFileError, load_sae, load_sae_folder, sae_lens_available
from synthviz.sae.results import SAEResults, evaluate_for_view
from synthviz.sae.weights import SAE

__all__ = ["SAE", "SAEAccumulator", "SAEEvalResult", "SAEFileError", "SAEResults",
           "compare_models", "compare_saes", "evaluate_for_view", "evaluate_sae", "load_sae",
           "load_sae_folder", "sae_lens_available", "shift_table"]
