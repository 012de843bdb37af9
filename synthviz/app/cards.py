"""The headline cards above the plots: their values from `Results`, and their HTML."""

from __future__ import annotations

import html
from typing import Any

from synthviz.app.results import Results

CARDS = ("N", "D", "L0", "first-K L0", "rho_mm", "ME violations", "samples/s")

CARD_CSS = """
:host { flex: 1 1 0; min-width: 120px; }
.sv-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 6px 12px; background: #fafbfc;
           height: 92px; box-sizing: border-box; overflow: hidden; }  /* two lines of subtitle */
.sv-card .sv-label { font-size: 12px; color: #57606a; text-transform: none; }
.sv-card .sv-value { font-size: 22px; font-weight: 600; color: #1f2328; }
.sv-card .sv-sub { font-size: 11px; color: #57606a; }
"""


def _fmt(v: Any, spec: str) -> str:
    if v is None:
        return "…"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def card_values(res: Results | None, first_k: int) -> dict[str, tuple[str, str]]:
    """(value, subtitle) per headline card."""
    if res is None:
        return {k: ("…", "") for k in CARDS}
    c = res.cards
    exp = res.expected_l0
    base = res.base_stats
    bsup = res.base_superposition
    sub_l0 = f"expected {exp[0]:.2f}" if exp else ""
    sub_k = f"K={first_k}" + (f", expected {exp[1]:.2f}" if exp else "")
    if base is not None:
        sub_l0 += f" · base {base.l0.mean:.2f}"
        sub_k += f" · base {base.l0.mean_first_k:.2f}"
    return {
        "N": (f"{c['N']:,}", ""),
        "D": (f"{c['D']:,}", ""),
        "L0": (_fmt(c["L0"], ".2f"), sub_l0),
        "first-K L0": (_fmt(c["first-K L0"], ".2f"), sub_k),
        "rho_mm": (_fmt(c["rho_mm"], ".4f"),
                   "computing…" if c["rho_mm"] is None else
                   (f"base {bsup.rho_mm:.4f}" if bsup is not None else "mean max |cos|")),
        "ME violations": (f"{c['ME violations']:,}", f"orphans {res.stats.orphan_children:,}"),
        "samples/s": (f"{c['samples/s']:,.0f}", f"{res.stats.l0.samples:,} samples with stats"),
    }


def card_html(name: str, value: str, sub: str) -> str:
    return (f'<div class="sv-card"><div class="sv-label">{html.escape(name)}</div>'
            f'<div class="sv-value">{html.escape(value)}</div>'
            f'<div class="sv-sub">{html.escape(sub)}</div></div>')


def card_classes(name: str) -> list[str]:
    return ["sv-card-pane", "sv-card-" + name.lower().replace(" ", "-").replace("/", "-per-")]
