"""The README's generated sections: text between a start and an end marker comment, read and
replaced by the scripts that generate them (preset_table.py, bench_summary.py)."""

from __future__ import annotations


def marked_section(text: str, start: str, end: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers {start} ... {end}")
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def replace_section(text: str, body: str, start: str, end: str) -> str:
    marked_section(text, start, end)  # the same message when the markers are missing
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"
