"""Cleaned label CSVs: the automatic policy, changes.csv, atomic writes, fastai reads them.

``make_result`` builds a small labelled dataset on disk with one planted finding per
issue type and an :class:`AuditResult` that follows the result contract; the FiftyOne
and browser tests import it from here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.export.csv import CHANGES_COLUMNS, clean_labels
from imgaudit.result import AuditResult

# (path, label, split) in index order; the comments say what is planted on each row
ROWS = [
    ("a/00.png", "a", "train"),  # 0 clean
    ("a/01.png", "a", "train"),  # 1 exact duplicate group 0, kept
    ("a/02.png", "a", "train"),  # 2 exact duplicate group 0 (byte copy of 1)
    ("a/03.png", "a", "train"),  # 3 near duplicate group 1, kept
    ("a/04.png", "a", "train"),  # 4 near duplicate group 1 (resized copy of 3)
    ("a/05.png", "a", "train"),  # 5 label issue, suggests b at 0.95
    ("b/06.png", "b", "train"),  # 6 label issue, suggests a at 0.60
    ("b/07.png", "b", "train"),  # 7 rotated, 90 degrees would upright it
    ("b/08.png", "b", "train"),  # 8 low resolution (16 x 16)
    ("b/09.png", "b", "train"),  # 9 unreadable (corrupt bytes)
    ("b/10.png", "b", "train"),  # 10 clean
    ("b/11.png", "b", "train"),  # 11 near duplicate group 2, kept (train)
    ("a/12.png", "a", "valid"),  # 12 clean
    ("a/13.png", "a", "valid"),  # 13 clean
    ("b/14.png", "b", "valid"),  # 14 label issue, suggests a at 0.99
    ("b/15.png", "b", "valid"),  # 15 near duplicate group 2 (copy of 11): a split leak
]
PATHS = [r[0] for r in ROWS]


def _picture(i: int, size: int = 64) -> Image.Image:
    """A distinct, colourful picture per index (so the App grid visibly renders)."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(40, 215, size=3)
    img = np.stack(
        [base[c] + 40 * np.sin(2 * np.pi * (xx * (c + 1) + yy * (i % 3 + 1))) for c in range(3)],
        axis=-1,
    )
    x0, y0 = rng.integers(4, size // 2, size=2)
    img[y0 : y0 + size // 3, x0 : x0 + size // 4] = rng.uniform(0, 255, size=3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_images(root: Path) -> None:
    for i, path in enumerate(PATHS):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        if i == 9:
            (root / path).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        elif i == 2:
            (root / path).write_bytes((root / PATHS[1]).read_bytes())
        elif i in (4, 15):
            src = Image.open(root / PATHS[i - 1 if i == 4 else 11])
            src.resize((60, 60)).save(root / path)
        elif i == 8:
            _picture(i).resize((16, 16)).save(root / path)
        elif i == 7:
            _picture(i).rotate(90).save(root / path)
        else:
            _picture(i).save(root / path)


def make_issues(splits: bool = True) -> pd.DataFrame:
    n = len(ROWS)
    df = pd.DataFrame(
        {
            "label": [r[1] for r in ROWS],
            "split": [r[2] for r in ROWS] if splits else [None] * n,
            "width": [
                16 if i == 8 else 60 if i in (4, 15) else np.nan if i == 9 else 64 for i in range(n)
            ],
            "height": [
                16 if i == 8 else 60 if i in (4, 15) else np.nan if i == 9 else 64 for i in range(n)
            ],
            "format": [None if i == 9 else "PNG" for i in range(n)],
        },
        index=pd.Index(PATHS, name="path"),
    )

    def flag(check: str, rows: dict[int, float]) -> None:
        df[issue_col(check)] = [i in rows for i in range(n)]
        df[score_col(check)] = [rows.get(i, 1.0) for i in range(n)]

    flag("unreadable", {9: 0.0})
    flag("low_resolution", {8: 0.25})
    # exact duplicates mark "no group" with NaN, near duplicates with -1: both occur
    flag("exact_duplicates", {1: 0.0, 2: 0.0})
    df[extra_col("exact_duplicates", "group")] = [0.0 if i in (1, 2) else np.nan for i in range(n)]
    df[extra_col("exact_duplicates", "keep")] = [i == 1 for i in range(n)]
    flag("near_duplicates", {3: 0.1, 4: 0.1, 11: 0.05, 15: 0.05})
    df[extra_col("near_duplicates", "group")] = [
        1 if i in (3, 4) else 2 if i in (11, 15) else -1 for i in range(n)
    ]
    df[extra_col("near_duplicates", "keep")] = [i in (3, 11) for i in range(n)]
    flag("label", {5: 0.05, 6: 0.2, 14: 0.01})
    sugg = {5: ("b", 0.95), 6: ("a", 0.60), 14: ("a", 0.99)}
    df[extra_col("label", "suggested")] = [sugg.get(i, (r[1],))[0] for i, r in enumerate(ROWS)]
    df[extra_col("label", "confidence")] = [sugg.get(i, (None, 0.8))[1] for i in range(n)]
    df.loc[PATHS[9], [extra_col("label", "suggested"), extra_col("label", "confidence")]] = [
        None,
        np.nan,
    ]
    flag("rotation", {7: 0.1})
    df[extra_col("rotation", "suggested")] = [90 if i == 7 else 0 for i in range(n)]
    return df


def make_result(root: Path, splits: bool = True) -> AuditResult:
    """Write the images under ``root`` and return a hand-built result for them."""
    write_images(root)
    return AuditResult(
        make_issues(splits),
        info={"imageset": {"n": len(ROWS)}},
        recommendations={"code": "dls = ImageDataLoaders.from_csv(...)", "reasons": ["test"]},
        config={"size": 64},
        root=root,
    )


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        + str(p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*.png"))
    }


@pytest.fixture()
def result(tmp_path: Path) -> AuditResult:
    return make_result(tmp_path / "data")


def _changes(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""]).set_index("path")


def test_default_policy(result: AuditResult, tmp_path: Path) -> None:
    before = _digest(Path(result.root))
    out = tmp_path / "out" / "cleaned.csv"
    cleaned = clean_labels(result, out)
    written = pd.read_csv(out)
    assert list(written.columns) == ["fname", "label", "is_valid"]
    pd.testing.assert_frame_equal(written, cleaned.reset_index(drop=True), check_dtype=False)
    kept = [PATHS[i] for i in (0, 1, 3, 7, 8, 10, 11, 12, 13)]
    assert list(written["fname"]) == kept
    assert list(written["is_valid"]) == [False] * 7 + [True] * 2
    assert list(written["label"]) == [ROWS[PATHS.index(p)][1] for p in kept]

    changes = _changes(out.parent / "changes.csv")
    assert list(changes.reset_index().columns) == CHANGES_COLUMNS
    expected = {
        PATHS[9]: "unreadable",
        PATHS[2]: "exact_duplicates: another copy is kept",
        PATHS[4]: "near_duplicates: another copy is kept",
        PATHS[15]: "split leak: duplicates an image of an earlier split",
        PATHS[5]: "label issue",
        PATHS[6]: "label issue",
        PATHS[14]: "label issue",
    }
    assert changes["reason"].to_dict() == expected
    assert set(changes["action"]) == {"drop"}
    assert changes["new_label"].isna().all()
    assert changes.loc[PATHS[14], "score"] == pytest.approx(0.01)
    assert changes.loc[PATHS[15], "original_label"] == "b"
    # source images untouched, no temporary files left next to the outputs
    assert _digest(Path(result.root)) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["changes.csv", "cleaned.csv"]


def test_relabel_policy_uses_threshold(result: AuditResult, tmp_path: Path) -> None:
    out = tmp_path / "cleaned.csv"
    cleaned = clean_labels(result, out, label_issues="relabel", relabel_threshold=0.9).set_index(
        "fname"
    )
    assert cleaned.loc[PATHS[5], "label"] == "b"  # 0.95 >= 0.9
    assert cleaned.loc[PATHS[14], "label"] == "a"  # 0.99, a validation image
    assert cleaned.loc[PATHS[6], "label"] == "b"  # 0.60 < 0.9: kept as given
    changes = _changes(tmp_path / "changes.csv")
    assert changes.loc[PATHS[5], ["action", "new_label"]].tolist() == ["relabel", "b"]
    assert changes.loc[PATHS[6], ["action", "new_label"]].tolist() == ["keep", "b"]
    assert "< 0.9" in changes.loc[PATHS[6], "reason"]

    clean_labels(result, out, label_issues="relabel", relabel_threshold=0.5)
    assert pd.read_csv(out).set_index("fname").loc[PATHS[6], "label"] == "a"


def test_keep_policies(result: AuditResult, tmp_path: Path) -> None:
    out = tmp_path / "cleaned.csv"
    cleaned = clean_labels(
        result, out, unreadable="keep", duplicates="keep", split_leaks="keep", label_issues="keep"
    )
    assert list(cleaned["fname"]) == PATHS
    changes = _changes(tmp_path / "changes.csv")
    assert sorted(changes.index) == sorted(PATHS[i] for i in (5, 6, 14))
    assert set(changes["action"]) == {"keep"}


def test_without_splits_valid_keeps_groups_together(tmp_path: Path) -> None:
    result = make_result(tmp_path / "data", splits=False)
    out = tmp_path / "cleaned.csv"
    cleaned = clean_labels(
        result, out, duplicates="keep", label_issues="keep", valid_pct=0.4, seed=3
    )
    valid = cleaned.set_index("fname")["is_valid"]
    assert 0 < valid.sum() < len(valid)
    for a, b in ((1, 2), (3, 4), (11, 15)):
        assert valid[PATHS[a]] == valid[PATHS[b]]
    # no split leak can exist without splits
    assert "split leak" not in set(_changes(tmp_path / "changes.csv")["reason"])
    again = clean_labels(result, out, duplicates="keep", label_issues="keep", valid_pct=0.4, seed=3)
    pd.testing.assert_frame_equal(cleaned, again)


def test_refuses_bad_options_and_image_targets(result: AuditResult, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="label_issues"):
        clean_labels(result, tmp_path / "x.csv", label_issues="fix")
    with pytest.raises(ValueError, match="relabel_threshold"):
        clean_labels(result, tmp_path / "x.csv", relabel_threshold=1.5)
    with pytest.raises(ValueError, match="audited images"):
        clean_labels(result, Path(result.root) / PATHS[0])
    with pytest.raises(ValueError, match="different files"):
        clean_labels(result, tmp_path / "c.csv", changes_csv=tmp_path / "c.csv")
    assert not (tmp_path / "x.csv").exists()


def test_failed_write_leaves_no_partial_files(result: AuditResult, tmp_path: Path) -> None:
    out = tmp_path / "cleaned.csv"
    out.write_text("previous\n")
    blocker = tmp_path / "changes.csv"
    blocker.mkdir()  # os.replace onto a directory fails
    with pytest.raises(OSError):
        clean_labels(result, out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # each file is replaced whole or not at all: the CSV is complete, never truncated
    assert pd.read_csv(out).columns.tolist() == ["fname", "label", "is_valid"]


@pytest.mark.slow
def test_fastai_reads_cleaned_csv(result: AuditResult, tmp_path: Path) -> None:
    from fastai.vision.all import ImageDataLoaders, Resize

    out = tmp_path / "cleaned.csv"
    clean_labels(result, out, label_issues="relabel")
    dls = ImageDataLoaders.from_csv(
        result.root,
        csv_fname=out,
        valid_col="is_valid",
        item_tfms=Resize(32),
        bs=4,
        num_workers=0,
        device="cpu",
    )
    assert len(dls.train_ds) == 9 and len(dls.valid_ds) == 3
    assert list(dls.vocab) == ["a", "b"]
    assert sorted(dls.valid_ds.items["fname"]) == [PATHS[12], PATHS[13], PATHS[14]]
    xb, yb = dls.one_batch()
    assert tuple(xb.shape) == (4, 3, 32, 32)


def test_source_column_names_are_reused(result: AuditResult, tmp_path: Path) -> None:
    result.info["imageset"] = {
        "columns": {"file": "image", "label": "class", "is_valid": None, "split": "fold"}
    }
    out = tmp_path / "cleaned.csv"
    clean_labels(result, out)
    written = pd.read_csv(out)
    assert list(written.columns) == ["image", "class", "is_valid", "fold"]
    assert set(written["fold"]) == {"train", "valid"}
    assert (written["is_valid"] == written["fold"].eq("valid")).all()
