"""Tests of the fastai recipe built from audit findings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from imgaudit.columns import issue_col
from imgaudit.recommend import RecommendParams, recommend


def table(sizes, labels=None, **cols) -> pd.DataFrame:
    idx = pd.Index([f"img{i}.png" for i in range(len(sizes))], name="path")
    df = pd.DataFrame({"width": [w for w, _ in sizes], "height": [h for _, h in sizes]}, index=idx)
    if labels is not None:
        df["label"] = labels
    for k, v in cols.items():
        df[k] = v
    return df


def rotation_info(**verdicts):
    views = {}
    for name in verdicts:
        fam = "small_rotation" if name.startswith("rot+") or name.startswith("rot-") else "other"
        views[name] = {"family": fam, "angle": float(name[3:]) if fam == "small_rotation" else None}
    return {"rotation": {"verdicts": dict(verdicts), "views": views, "pairs": {}}}


ALL_SAFE = {v: "safe" for v in ("rot90", "rot180", "rot270", "flip_h", "flip_v", "rot+10", "rot-10", "rot+30", "rot-30")}
UPRIGHT = {**ALL_SAFE, "rot90": "unsafe", "rot180": "unsafe", "rot270": "unsafe", "flip_v": "unsafe",
           "rot+30": "unclear", "rot-30": "unsafe"}


def _exec(code: str) -> dict:
    """Run the recipe with fastai's own names to prove it is valid, pasteable code."""
    from fastai.vision.all import Resize, aug_transforms  # noqa: F401

    ns = {"Resize": Resize, "aug_transforms": aug_transforms}
    exec(code, ns)
    return ns


def test_square_images_squish_and_upright_data_gets_no_vertical_flips():
    df = table([(28, 28)] * 50, labels=["a", "b"] * 25)
    rec = recommend(df, rotation_info(**UPRIGHT), {"size": 64})
    json.dumps(rec)
    item = rec["item_tfms"][0]
    assert item["name"] == "Resize" and item["kwargs"]["method"] == "squish" and item["kwargs"]["size"] == 64
    aug = rec["batch_tfms"][0]["kwargs"]
    assert aug == {"size": 64, "max_rotate": 10.0, "do_flip": True, "flip_vert": False}
    ns = _exec(rec["code"])
    assert type(ns["item_tfms"]).__name__ == "Resize"
    names = [type(t).__name__ for t in ns["batch_tfms"]]
    assert "Flip" in names and "Dihedral" not in names
    # one reason per line of code that carries a choice
    assert len(rec["reasons"]) == 5
    assert rec["reasons"][0].startswith("item_tfms = Resize(64")
    assert any("flip_vert=False" in r and "rot90 unsafe" in r for r in rec["reasons"])
    # 28 px images at size 64: the upsampling warning
    assert any("smaller than the input size 64" in w for w in rec["warnings"])


def test_rotation_invariant_data_gets_dihedral_and_large_rotations():
    df = table([(300, 300)] * 20)
    rec = recommend(df, rotation_info(**ALL_SAFE), {"size": 224})
    aug = rec["batch_tfms"][0]["kwargs"]
    assert aug["flip_vert"] is True and aug["do_flip"] is True and aug["max_rotate"] == 45.0
    ns = _exec(rec["code"])
    assert "Dihedral" in [type(t).__name__ for t in ns["batch_tfms"]]
    # 300 px is above the size but below 2x: presize to the median short side
    assert rec["item_tfms"][0]["kwargs"]["size"] == 300


def test_small_rotations_follow_the_probe():
    info = rotation_info(**{**UPRIGHT, "rot+10": "unsafe"})
    rec = recommend(table([(32, 32)] * 5), info, {"size": 32})
    assert rec["batch_tfms"][0]["kwargs"]["max_rotate"] == 0.0
    info = rotation_info(**{**UPRIGHT, "rot+30": "safe", "rot-30": "safe", "flip_h": "unsafe"})
    rec = recommend(table([(32, 32)] * 5), info, {"size": 32})
    aug = rec["batch_tfms"][0]["kwargs"]
    assert aug["max_rotate"] == 30.0 and aug["do_flip"] is False and aug["flip_vert"] is False


@pytest.mark.parametrize(
    ("sizes", "method"),
    [
        ([(640, 480)] * 30, "squish"),  # one shared aspect ratio
        ([(640, 480), (480, 640), (500, 500), (600, 500)] * 10, "crop"),
        ([(1500, 500), (600, 600), (500, 500), (550, 500)] * 10, "pad"),  # 25% elongated
    ],
)
def test_resize_method_from_aspect_ratios(sizes, method):
    rec = recommend(table(sizes), {}, {"size": 224})
    kw = rec["item_tfms"][0]["kwargs"]
    assert kw["method"] == method
    assert kw["size"] == 448  # presized: images are over twice the input size
    _exec(rec["code"])


def test_works_without_any_findings():
    df = pd.DataFrame(index=pd.Index(["a.png", "b.png"], name="path"))
    rec = recommend(df, {}, None)
    assert rec["item_tfms"][0]["kwargs"] == {"size": 224, "method": "crop"}
    assert rec["batch_tfms"][0]["kwargs"] == {"size": 224, "max_rotate": 10.0, "do_flip": True, "flip_vert": False}
    assert any("fastai's default" in r for r in rec["reasons"])
    assert rec["warnings"] == []
    _exec(rec["code"])
    # a skipped probe (no verdicts) is the same as no probe
    rec2 = recommend(df, {"rotation": {"skipped": "no labels"}}, {"size": 224})
    assert rec2["batch_tfms"] == rec["batch_tfms"]


def test_warnings_from_issue_columns():
    n = 100
    labels = ["big"] * 90 + ["small"] * 6 + ["tiny"] * 4
    flags = np.zeros(n, bool)
    df = table([(256, 256)] * n, labels=labels)
    df[issue_col("unreadable")] = flags.copy()
    df.iloc[:2, df.columns.get_loc(issue_col("unreadable"))] = True
    df[issue_col("label")] = flags.copy()
    df.iloc[5:12, df.columns.get_loc(issue_col("label"))] = True
    df[issue_col("rotation")] = flags.copy()
    df.iloc[20:23, df.columns.get_loc(issue_col("rotation"))] = True
    df[issue_col("split_leak")] = flags.copy()
    df.iloc[30:34, df.columns.get_loc(issue_col("split_leak"))] = True
    info = rotation_info(**UPRIGHT)
    info["rotation"]["pairs"] = {"rot180": [{"from": "6", "to": "9", "count": 40, "fraction": 0.8}]}
    w = recommend(df, info, {"size": 224}, RecommendParams(imbalance_ratio=5))["warnings"]
    text = "\n".join(w)
    assert "2 (2.0%) files are unreadable" in text
    assert "7 (7.0%) images look mislabeled" in text
    assert "3 (3.0%) images look rotated" in text
    assert "4 images in validation/test duplicate a training image" in text
    assert "'big' has 90 images, 'tiny' 4" in text
    assert "fewer than 10 images" in text
    assert "rot180 turns '6' into '9'" in text
    assert "smaller than the input size" not in text  # 256 px >= 224
