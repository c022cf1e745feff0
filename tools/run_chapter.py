"""Execute one chapter through a Jupyter kernel and print its glued values.

A developer's check while writing a chapter, without building the whole book:

    .venv/bin/python tools/run_chapter.py book/inverse.md [--out DIR]

It runs the chapter as a reader's kernel would (cwd = the book folder), stops at
the first failing cell (a failed claim check included) with its traceback, and
otherwise prints every glued name with its text value and the seconds each
cell took. The executed notebook is written to DIR (default /tmp).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    notebook = jupytext.read(args.chapter)
    client = NotebookClient(
        notebook,
        timeout=1200,
        kernel_name="python3",
        resources={"metadata": {"path": str(args.chapter.resolve().parent)}},
    )
    start = time.perf_counter()
    failed = False
    try:
        client.execute()
    except CellExecutionError as error:
        print(str(error)[-4000:])
        failed = True
    target = args.out / (args.chapter.stem + ".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime, value in data.items():
                if mime.startswith("application/papermill.record/text/plain"):
                    key = output.get("metadata", {}).get("scrapbook", {}).get("name", "?")
                    print(f"{key} = {value}")
    print(
        f"{'FAILED' if failed else 'ok'}: {args.chapter} in {time.perf_counter() - start:.1f} s;"
        f" executed notebook {target}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
