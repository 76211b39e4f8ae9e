"""The ``label`` and ``outlier`` checks (fed with user-supplied probabilities/features)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgaudit.checks import CHECKS, DEFAULT_CHECKS
from imgaudit.checks.base import SkipCheck
from imgaudit.checks.labels import LabelCheck, OutlierCheck
from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.config import AuditConfig
from imgaudit.context import AuditContext
from imgaudit.imageset import load_images


def _write(root: Path, classes: list[str] | None, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for c in classes or [""]:
        folder = root / c if c else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _ctx(root: Path, **options: object) -> AuditContext:
    return AuditContext(load_images(root), AuditConfig(num_workers=0, progress=False, **options))


def test_registered_after_duplicates() -> None:
    assert {"label", "outlier"} <= set(CHECKS)
    order = list(DEFAULT_CHECKS)
    assert order.index("label") > order.index("near_duplicates")


def test_label_check_flags_confidently_wrong_labels(tmp_path: Path) -> None:
    root = _write(tmp_path / "d", ["a", "b", "c"], per_class=20)
    ctx = _ctx(root)
    labels = ctx.imageset.table["label"].to_numpy()
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    rng = np.random.default_rng(0)
    probs = np.full((len(y), 3), 0.05)
    probs[np.arange(len(y)), y] = 0.9
    probs += rng.uniform(0, 0.02, probs.shape)
    wrong = np.array([1, 25, 47])
    probs[wrong] = 0.05
    probs[wrong, (y[wrong] + 1) % 3] = 0.9
    probs /= probs.sum(axis=1, keepdims=True)
    ctx = _ctx(root, pred_probs=probs)
    check = LabelCheck()
    df = check.validate(check.run(ctx), ctx.paths)
    flagged = np.flatnonzero(df[issue_col("label")].to_numpy())
    np.testing.assert_array_equal(flagged, wrong)
    scores = df[score_col("label")].to_numpy()
    assert scores[wrong].max() < np.delete(scores, wrong).min()
    sugg = df[extra_col("label", "suggested")].to_numpy()
    assert [classes.index(s) for s in sugg[wrong]] == list((y[wrong] + 1) % 3)
    conf = df[extra_col("label", "confidence")].to_numpy()
    assert np.all((conf > 0.8) & (conf <= 1))
    info = json.loads(json.dumps(check.info))  # JSON-serialisable as is
    assert info["n_issues"] == 3 and info["mode"] == "user"
    assert {r["class"] for r in info["per_class"]} == set(classes)
    assert 0.0 < info["noise_rate"] < 0.2
    assert info["confused_pairs"] and info["confused_pairs"][0]["n_overlapping"] >= 1
    assert np.asarray(info["confident_joint"]["counts"]).sum() == len(y)


def test_label_check_skips_without_labels_or_with_one_class(tmp_path: Path) -> None:
    unlabeled = _write(tmp_path / "flat", None)
    with pytest.raises(SkipCheck, match="no labels"):
        LabelCheck().run(_ctx(unlabeled))
    one = _write(tmp_path / "one", None)
    table = pd.DataFrame({"fname": [f"{i}.png" for i in range(10)], "label": "only"})
    ctx = AuditContext(
        load_images(one, labels=table),
        AuditConfig(num_workers=0, progress=False, pred_probs=np.ones((10, 1))),
    )
    assert ctx.labels is not None
    with pytest.raises(SkipCheck, match="2 classes"):
        LabelCheck().run(ctx)


def test_outlier_check_finds_the_far_image(tmp_path: Path) -> None:
    root = _write(tmp_path / "d", ["a", "b"], per_class=15)
    rng = np.random.default_rng(0)
    n = 30
    feats = np.concatenate([rng.normal([5, 0, 0], 0.3, (15, 3)), rng.normal([0, 5, 0], 0.3, (15, 3))])
    feats[7] = [0, 0, 5]  # points nowhere near either class
    probs = np.full((n, 2), 0.5)
    ctx = _ctx(root, pred_probs=probs, features=feats)
    check = OutlierCheck()
    df = check.validate(check.run(ctx), ctx.paths)
    assert np.flatnonzero(df[issue_col("outlier")].to_numpy()).tolist() == [7]
    scores = df[score_col("outlier")].to_numpy()
    assert scores.argmin() == 7 and scores[7] < 0.5 <= np.delete(scores, 7).min()
    json.dumps(check.info)
    with pytest.raises(SkipCheck, match="no embeddings"):
        OutlierCheck().run(_ctx(root, pred_probs=probs))
