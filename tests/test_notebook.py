"""notebooks/quickstart.ipynb: committed without outputs, and it runs top to bottom."""

import os
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


# About 30 s: LDIFS_NOTEBOOK_QUICK shrinks every run in the notebook to a smoke test.
def test_notebook_executes(tmp_path, monkeypatch):
    pytest.importorskip("ipykernel")
    from nbclient import NotebookClient

    monkeypatch.setenv("LDIFS_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Run from a copy of the repository root's view: configs/ is read, runs/ is written in tmp.
    workdir = tmp_path / "repo"
    workdir.mkdir()
    os.symlink(NOTEBOOK.parents[1] / "configs", workdir / "configs")
    client = NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "mean delta LP" in outputs
