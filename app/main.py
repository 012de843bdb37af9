"""`panel serve app`: the synthviz explorer (placeholder until the app lands)."""
import panel as pn

if pn.state.served:
    pn.pane.Markdown("# synthviz\nThe explorer is being built.").servable()
