"""The explorer app: a param `Controller` (the settings and the worker), the shared `STORE`, and
the Panel views that show a controller's results.

    from synthviz.app import Controller, Explorer
    controller = Controller()
    Explorer(controller=controller)   # in JupyterLab, renders the explorer inline
"""

from synthviz.app.controller import Controller
from synthviz.app.results import Results
from synthviz.app.store import STORE, Store
from synthviz.app.views import Explorer, create_app

__all__ = ["Controller", "Explorer", "Results", "STORE", "Store", "create_app"]
