"""docs/tutorial.ipynb runs end to end on the CPU, offline, and shows its pictures and the class's rich display."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


@pytest.mark.slow
def test_the_tutorial_runs_and_shows_its_plots_and_displays(tmp_path, monkeypatch):
    # one thread: the demo's small tensors ran up to 20x slower on two threads of a busy 2-core machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(TUTORIAL, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells)  # stored without outputs
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(notebook, tmp_path / "executed.ipynb")  # to look at when it fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    data = [output.get("data", {}) for output in outputs]
    assert sum("image/png" in d for d in data) >= 7  # importances, crops, two kinds of maps, curves, clusters + k, ViT
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "semi-nmf concepts:" in printed  # the ViT's signed features got Semi-NMF
    pages = [d["text/html"] for d in data if "text/html" in d]
    assert any("% of logit" in page and "data:image/jpeg;base64," in page and "<b>lamp (0)</b>" in page
               for page in pages)  # the class result
    assert any("<b>ConceptBank</b>" in page for page in pages) and any("<b>RenderResult</b>" in page for page in pages)
    assert (tmp_path / "tutorial-run" / "classes" / "0000" / "index.html").is_file()
