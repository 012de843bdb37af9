"""A page holding only the app's SAE tab (`SAEView`) on a small saved model, for the browser test:
`panel serve tests/sae/sae_tab_page.py --args MODEL_FOLDER SAE_ROOT`."""

import sys

import torch

from synthviz.app.sae_tab import SAEView
from synthviz.io import load_folder

torch.set_num_threads(1)  # the test machine is shared
model_dir, root = sys.argv[1], sys.argv[2]
SAEView(root=root, model=load_folder(model_dir, device="cpu"), base=None,
        compare_base=False).servable()
