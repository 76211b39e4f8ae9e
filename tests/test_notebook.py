"""The quickstart notebook is stored without outputs and executes top to bottom."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_notebook_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    # The kernel inherits this environment: a scratch FiftyOne database, cache and
    # work folder, so the notebook touches nothing of the user's.
    monkeypatch.setenv("FIFTYONE_DATABASE_DIR", str(tmp_path / "fiftyone-db"))
    monkeypatch.setenv("FIFTYONE_DATABASE_VALIDATION", "false")
    monkeypatch.setenv("FIFTYONE_DO_NOT_TRACK", "true")
    monkeypatch.setenv("IMGAUDIT_QUICKSTART_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",  # jupyter_client runs it with this interpreter (sys.executable)
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert errors == []
    work = tmp_path / "work"
    assert (work / "report.html").is_file()
    assert (work / "cleaned.csv").is_file()
    assert (work / "audit_result" / "meta.json").is_file()
    # the summary table was displayed
    texts = "".join(
        str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "issue_type" in texts and "num_issues" in texts
