"""The explorer app: a param `Controller`, the shared `STORE`, and Panel views.

    from synthviz.app import Controller
    controller = Controller()      # in JupyterLab, `controller` renders the explorer inline
"""

from synthviz.app.controller import Controller, Results
from synthviz.app.store import STORE, Store

__all__ = ["Controller", "Results", "STORE", "Store", "create_app"]


def create_app(controller: Controller | None = None):
    from synthviz.app.views import create_app as _create
    return _create(controller)
