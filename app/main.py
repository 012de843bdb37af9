"""`panel serve app`: the synthviz explorer. Everything lives in `synthviz.app`."""
import panel as pn

from synthviz.app import create_app

pn.extension(sizing_mode="stretch_width")

if pn.state.served:
    create_app().servable(title="synthviz")
