"""Every notebook executes top to bottom in a fresh kernel (few steps per epoch)."""

import ast
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n in os.listdir(NOTEBOOKS) if n.endswith(".ipynb")))
def test_notebook_executes(name, monkeypatch):
    monkeypatch.setenv("HD_NOTEBOOK_STEPS", "20")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": NOTEBOOKS}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "not generated yet" not in outputs  # Every table a notebook plots is committed.


def test_the_results_notebook_reads_committed_tables():
    """Each `load(...)` of the ablations notebook names a file under results/ (a moved table
    would otherwise only print "not generated yet")."""
    notebook = nbformat.read(os.path.join(NOTEBOOKS, "02_ablations.ipynb"), as_version=4)
    paths = [os.path.join(ROOT, "results", *(arg.value for arg in node.args))
             for cell in notebook.cells if cell.cell_type == "code"
             for node in ast.walk(ast.parse(cell.source))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "load"]
    assert len(paths) >= 4
    assert [p for p in paths if not os.path.exists(p)] == []
