"""Build notebooks/NN_*.ipynb from their readable sources notebooks/src/NN_*.py (percent format).

    python tools/build_notebooks.py          # rebuild every notebook
    python tools/build_notebooks.py --check  # exit 1 if a notebook is out of date (used by the tests)

Cell markers: ``# %%`` code, ``# %% [markdown]`` markdown (lines start with ``# ``), ``# %% tags=["parameters"]``
the papermill parameters cell. Outputs are never stored (the notebooks are committed stripped).

In the parameters cell, ``# ussnb-parameters: SECTION`` becomes the typed lines of that section of
:mod:`ussnb.config` (name, type, default, help) — the one source of every pipeline default.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "notebooks" / "src"
OUT = ROOT / "notebooks"
sys.path.insert(0, str(ROOT))
from ussnb.config import parameter_lines  # noqa: E402

PARAMETERS = re.compile(r"^# ussnb-parameters: (?P<section>\w+)")
MARKER = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def convert(text: str) -> nbformat.NotebookNode:
    cells, kind, tags, lines = [], None, [], []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", ln) for ln in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        else:
            cell = nbformat.v4.new_code_cell(body)
            if tags:
                cell.metadata["tags"] = tags
            cells.append(cell)

    for line in text.splitlines():
        m = MARKER.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            lines = []
        elif kind is not None:
            p = PARAMETERS.match(line)
            if p and "parameters" in tags:
                lines.extend(parameter_lines(p.group("section")))
            else:
                lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # deterministic ids keep diffs small
        cell["id"] = f"cell-{i:02d}"
    return nb


def build(check: bool = False) -> int:
    stale = []
    for src in sorted(SRC.glob("[0-9][0-9]_*.py")):
        target = OUT / (src.stem + ".ipynb")
        text = nbformat.writes(convert(src.read_text())) + "\n"
        if check:
            if not target.is_file() or target.read_text() != text:
                stale.append(target.name)
        else:
            target.write_text(text)
    if stale:
        print("out of date (run python tools/build_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(build(check="--check" in sys.argv))
