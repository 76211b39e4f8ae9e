"""FiftyOne export against the real embedded database (no mocks).

export -> reload in a fresh process -> fields, tags, saved views; reviewer edits through
the FiftyOne Python API -> read_review / clean_labels honour them; re-export refuses
without ``overwrite``; ``overwrite`` carries the reviewer's work over unless told not to.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

# FiftyOne reads its configuration when first imported, and starts its database on first
# use: point it at a scratch database before anything imports it. (CI may instead set
# FIFTYONE_DATABASE_URI to a MongoDB server; FiftyOne then ignores the directory.)
os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(
    tempfile.gettempdir(), f"imgaudit-test-fiftyone-db-{os.getuid()}"
)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_export_csv import PATHS, make_result  # noqa: E402

from imgaudit.columns import extra_col, issue_col, score_col  # noqa: E402
from imgaudit.export.csv import clean_labels  # noqa: E402
from imgaudit.export.fiftyone import read_review, to_fiftyone  # noqa: E402

pytestmark = pytest.mark.slow

PREFIX = f"imgaudit-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def fo():
    import fiftyone

    yield fiftyone
    for name in fiftyone.list_datasets():
        if name.startswith(PREFIX):
            fiftyone.delete_dataset(name)


@pytest.fixture(scope="module")
def exported(fo, tmp_path_factory):
    result = make_result(tmp_path_factory.mktemp("fo") / "data")
    name = f"{PREFIX}-export"
    to_fiftyone(result, name=name)
    return result, name


RELOAD = r"""
import json, sys
import fiftyone as fo

ds = fo.load_dataset(sys.argv[1])
schema = ds.get_field_schema()
samples = {}
for s in ds:
    d = {k: s[k] for k in schema if k not in ("id", "metadata", "created_at", "last_modified_at")}
    for k in ("ground_truth", "suggestion"):
        d[k] = None if s[k] is None else [s[k].label, s[k].confidence]
    samples[s.imgaudit_path] = d
print(json.dumps({
    "n": len(ds),
    "persistent": ds.persistent,
    "schema": {k: [type(f).__name__, getattr(getattr(f, "document_type", None), "__name__", None)]
               for k, f in schema.items()},
    "samples": samples,
    "views": {v: ds.load_saved_view(v).values("imgaudit_path") for v in ds.list_saved_views()},
    "info": ds.info["imgaudit"],
}, default=str))
"""


def test_export_reloads_in_a_fresh_process(exported):
    result, name = exported
    proc = subprocess.run(
        [sys.executable, "-c", RELOAD, name], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    issues = result.issues
    root = Path(result.root).absolute()

    assert got["n"] == len(issues) and got["persistent"] is True
    schema = got["schema"]
    assert schema["ground_truth"] == ["EmbeddedDocumentField", "Classification"]
    assert schema["suggestion"] == ["EmbeddedDocumentField", "Classification"]
    for t in result.issue_types:
        assert schema[score_col(t)][0] == "FloatField"
    assert schema["width"][0] == schema["height"][0] == "IntField"
    assert schema[extra_col("near_duplicates", "group")][0] == "IntField"
    assert schema[extra_col("near_duplicates", "keep")][0] == "BooleanField"

    for i, path in enumerate(PATHS):
        s, row = got["samples"][path], issues.loc[path]
        assert s["filepath"] == str(root / path)
        expected_tags = {f"issue:{t}" for t in result.issue_types if row[issue_col(t)]}
        if i == 15:
            expected_tags.add("issue:split_leak")
        assert set(s["tags"]) == expected_tags, path
        assert s["ground_truth"] == [row["label"], None]
        assert s["split"] == row["split"]
        for t in result.issue_types:
            assert s[score_col(t)] == pytest.approx(row[score_col(t)])
    samples = got["samples"]
    assert samples["b/09.png"]["suggestion"] is None  # unreadable: a sample all the same
    assert samples["b/09.png"]["width"] is None
    assert samples["a/05.png"]["suggestion"] == ["b", pytest.approx(0.95)]
    assert samples["b/08.png"]["width"] == 16
    assert samples["b/07.png"]["rotation_suggested"] == 90
    # exact duplicates used NaN for "no group", near duplicates -1: both read as no group
    assert [samples[p]["exact_duplicates_group"] for p in PATHS[:4]] == [None, 0, 0, None]
    assert [samples[p]["exact_duplicates_keep"] for p in PATHS[:4]] == [None, True, False, None]
    assert samples["b/15.png"]["near_duplicates_group"] == 2
    assert samples["b/15.png"]["split_leak_group"] == "near_duplicates:2"

    assert list(got["views"]) == [
        "label",
        "exact_duplicates",
        "near_duplicates",
        "split_leak",
        "rotation",
        "low_resolution",
        "unreadable",
    ]
    assert got["views"]["label"] == ["b/14.png", "a/05.png", "b/06.png"]  # worst first
    assert got["views"]["exact_duplicates"] == ["a/01.png", "a/02.png"]  # keeper first
    assert got["views"]["near_duplicates"] == ["a/03.png", "a/04.png", "b/11.png", "b/15.png"]
    assert got["views"]["split_leak"] == ["b/11.png", "b/15.png"]  # train copy first
    assert got["views"]["unreadable"] == ["b/09.png"]

    info = got["info"]
    assert info["root"] == str(root)
    assert info["summary"] == json.loads(result.summary.to_json(orient="records"))
    assert info["recommendations"] == result.recommendations
    assert info["issue_counts"]["split_leak"] == 1 and info["issue_counts"]["label"] == 3


def test_reexport_refuses_without_overwrite(fo, exported):
    result, name = exported
    ids = fo.load_dataset(name).values("id")
    with pytest.raises(ValueError, match="already exists"):
        to_fiftyone(result, name=name)
    assert fo.load_dataset(name).values("id") == ids
    assert not [n for n in fo.list_datasets() if n.startswith(name + ".")]  # no temp left


def _review(fo, name):
    """What a reviewer does in the App, done through the FiftyOne Python API."""
    from fiftyone import ViewField as F

    ds = fo.load_dataset(name)

    def edit(path, tags=(), label=None):
        s = ds.one(F("imgaudit_path") == path)
        s.tags = s.tags + list(tags)
        if label is not None:
            s.ground_truth.label = label
        s.save()

    edit("a/00.png", ["remove"])  # a clean image the reviewer rejects
    edit("a/04.png", ["keep"])  # a near duplicate the reviewer keeps
    edit("a/05.png", ["keep"])  # a label issue the reviewer says is fine
    edit("b/06.png", label="a")  # a label issue corrected by hand
    edit("b/14.png", ["relabel"])  # accept the suggestion (a)
    edit("b/10.png", ["keep", "remove"])  # conflicting: remove wins
    edit("b/09.png", ["keep"])  # unreadable: cannot be kept


def test_reviewer_decisions_drive_clean_labels(fo, tmp_path):
    result = make_result(tmp_path / "data")
    name = f"{PREFIX}-review"
    to_fiftyone(result, name=name)
    _review(fo, name)

    decisions = read_review(name)
    assert decisions["decision"].to_dict() == {
        "a/00.png": "remove",
        "a/04.png": "keep",
        "a/05.png": "keep",
        "b/06.png": "relabel",
        "b/14.png": "relabel",
        "b/10.png": "remove",
        "b/09.png": "keep",
    }
    assert decisions.loc["b/06.png", ["label", "original_label"]].tolist() == ["a", "b"]
    assert decisions.loc["b/14.png", "label"] is None

    out = tmp_path / "out" / "cleaned.csv"
    with pytest.warns(UserWarning, match="unreadable"):
        clean_labels(result, out, dataset=name)
    cleaned = pd.read_csv(out).set_index("fname")
    expected = ["a/01.png", "a/03.png", "a/04.png", "a/05.png", "b/06.png", "b/07.png"]
    expected += ["b/08.png", "b/11.png", "a/12.png", "a/13.png", "b/14.png"]
    assert list(cleaned.index) == expected
    assert cleaned.loc[["a/05.png", "b/06.png", "b/14.png"], "label"].tolist() == ["a", "a", "a"]
    assert cleaned.loc["b/14.png", "is_valid"]

    changes = pd.read_csv(out.parent / "changes.csv").set_index("path")
    assert changes.loc["a/00.png", ["action", "reason"]].tolist() == ["drop", "reviewer: remove"]
    assert changes.loc["b/10.png", "action"] == "drop"
    assert changes.loc["a/04.png", ["action", "reason"]].tolist() == ["keep", "reviewer: keep"]
    assert changes.loc["b/06.png", ["action", "new_label", "reason"]].tolist() == [
        "relabel",
        "a",
        "reviewer: corrected label",
    ]
    assert changes.loc["b/14.png", ["action", "new_label"]].tolist() == ["relabel", "a"]
    assert changes.loc["b/09.png", ["action", "reason"]].tolist() == ["drop", "unreadable"]
    assert changes.loc["a/02.png", "action"] == "drop"  # automatic policy still applies

    # overwrite keeps the reviewer's tags and corrected labels ...
    before = read_review(name)
    ds = to_fiftyone(result, name=name, overwrite=True)
    pd.testing.assert_frame_equal(read_review(name), before.loc[read_review(name).index])
    assert sorted(read_review(name).index) == sorted(before.index)
    from fiftyone import ViewField as F

    s = ds.one(F("imgaudit_path") == "b/06.png")
    assert (s.ground_truth.label, s.imgaudit_label) == ("a", "b")
    assert sorted(ds.one(F("imgaudit_path") == "a/05.png").tags) == ["issue:label", "keep"]
    assert len(ds.list_saved_views()) == 7
    # ... unless asked not to
    ds = to_fiftyone(result, name=name, overwrite=True, keep_tags=False)
    assert read_review(name).empty
    assert ds.one(F("imgaudit_path") == "b/06.png").ground_truth.label == "b"
    assert not [n for n in fo.list_datasets() if n.startswith(name + ".")]
