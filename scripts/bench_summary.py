"""Copies the goals table of benchmarks/RESULTS.md into the README's benchmark summary.

    python scripts/bench_summary.py           # print the summary
    python scripts/bench_summary.py --write   # rewrite it between the README markers
    python scripts/bench_summary.py --check   # exit 1 when the README's summary differs

RESULTS.md is written by `python -m benchmarks.run`; this keeps the README's ratios in step with
it instead of typing them. Only the columns a reader needs first are kept (work, both figures,
ratio, goal, reached, when RESULTS.md has them); everything else stays in RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import readme_markers  # noqa: E402  (a sibling module)

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
START, END = "<!-- bench-summary:start -->", "<!-- bench-summary:end -->"
KEEP = ("work", "sae_lens", "synthviz", "ratio", "goal", "reached")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def goals_table(results: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the first table under the `## Goals` heading of RESULTS.md."""
    m = re.search(r"^## Goals.*?$", results, flags=re.M)
    if m is None:
        raise SystemExit(f"{RESULTS} has no '## Goals' section")
    lines = results[m.end():].splitlines()
    table = []
    for line in lines:
        if line.startswith("|"):
            table.append(line)
        elif table or line.startswith("## "):
            break
    if len(table) < 3:
        raise SystemExit(f"{RESULTS}: the Goals section has no table")
    return _cells(table[0]), [_cells(t) for t in table[2:]]


def machine_line(results: str) -> str:
    m = re.search(r"^- CPU: (.*)$", results, flags=re.M)
    return m.group(1).split(";")[0].strip() if m else "see RESULTS.md"


def render(results: str) -> str:
    header, rows = goals_table(results)
    keep = [i for i, h in enumerate(header) if h.lower() in KEEP] or list(range(len(header)))
    out = ["| " + " | ".join(header[i] for i in keep) + " |",
           "|" + "|".join("---" for _ in keep) + "|"]
    out += ["| " + " | ".join(r[i] if i < len(r) else "" for i in keep) + " |" for r in rows]
    out += ["", f"Measured by `python -m benchmarks.run` on {machine_line(results)}, synthviz and "
            "sae_lens side by side; the machine, dates, load and every figure are in "
            "[benchmarks/RESULTS.md](benchmarks/RESULTS.md). Copied here by "
            "`python scripts/bench_summary.py --write`."]
    return "\n".join(out)


def section(text: str) -> str:
    return readme_markers.marked_section(text, START, END)


def replace_section(text: str, body: str) -> str:
    return readme_markers.replace_section(text, body, START, END)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if not RESULTS.is_file():
        raise SystemExit(f"{RESULTS} does not exist; run `python -m benchmarks.run` first")
    body = render(RESULTS.read_text())
    text = README.read_text()
    if args.write:
        README.write_text(replace_section(text, body))
        return 0
    if args.check:
        if section(text) != body:
            print("README's benchmark summary differs from benchmarks/RESULTS.md; run "
                  "`python scripts/bench_summary.py --write`", file=sys.stderr)
            return 1
        return 0
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
