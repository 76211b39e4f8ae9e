from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATASET_SIZE, PLANTED
from PIL import Image

from imgaudit.checks.properties import PROPERTY_CHECKS, properties_info
from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.config import AuditConfig
from imgaudit.context import AuditContext
from imgaudit.imageset import load_images
from imgaudit.plots import resolution_plot

NAMES = [c.name for c in PROPERTY_CHECKS]


@pytest.fixture(scope="module")
def ctx(dataset_dir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ims = load_images(dataset_dir)
    c = AuditContext(ims, AuditConfig(size=DATASET_SIZE, num_workers=0, progress=False, cache_dir=False))
    yield c
    c.close()


def _run(ctx: AuditContext, name: str, **params) -> tuple[pd.DataFrame, dict]:
    cls = dict(zip(NAMES, PROPERTY_CHECKS, strict=True))[name]
    check = cls(**params)
    return check.validate(check.run(ctx), ctx.paths), check.info


def test_registered_in_order() -> None:
    assert NAMES == [
        "unreadable", "low_resolution", "odd_aspect_ratio", "odd_size", "grayscale",
        "dark", "light", "blurry", "low_information",
    ]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_contract(ctx: AuditContext, name: str) -> None:
    df, info = _run(ctx, name)
    assert df.index.equals(ctx.paths)
    assert df[issue_col(name)].dtype == bool
    s = df[score_col(name)]
    assert s.dtype == np.float64 and s.notna().all() and s.between(0, 1).all()
    # flagged images score below unflagged ones (lower = worse)
    flagged = df[issue_col(name)]
    if flagged.any() and (~flagged).any():
        assert s[flagged].max() <= s[~flagged].max()
    json.dumps(info)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "unreadable"])
def test_unreadable_rows_are_not_applicable(ctx: AuditContext, name: str) -> None:
    df, _ = _run(ctx, name)
    assert not df.at["cat/corrupt.jpg", issue_col(name)]
    assert df.at["cat/corrupt.jpg", score_col(name)] == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_flags_its_planted_image_and_no_normal_image(ctx: AuditContext, name: str) -> None:
    df, _ = _run(ctx, name)
    flagged = set(df.index[df[issue_col(name)]])
    assert set(PLANTED[name]) <= flagged
    normal = {p for p in ctx.paths if "/img_" in p}
    assert not (flagged & normal), flagged & normal


def test_unreadable_reason_extra(ctx: AuditContext) -> None:
    df, info = _run(ctx, "unreadable")
    reason = extra_col("unreadable", "reason")
    assert df.at["cat/corrupt.jpg", reason].startswith("corrupt: JPEG")
    assert df[reason].drop("cat/corrupt.jpg").isna().all()
    assert info == {"num_unreadable": 1, "reasons": {"corrupt": 1}}


def test_grayscale_from_pixels_and_planted_readables(ctx: AuditContext) -> None:
    df, _ = _run(ctx, "grayscale")
    assert ctx.records.at["cat/gray_rgb.png", "mode"] == "RGB"  # an RGB file...
    assert df.at["cat/gray_rgb.png", issue_col("grayscale")]  # ...judged gray from its pixels
    assert df.at["cup/sixteen.png", issue_col("grayscale")]
    assert not df.at["cup/cmyk.jpg", issue_col("grayscale")]


def test_low_resolution_score_and_params(ctx: AuditContext) -> None:
    df, info = _run(ctx, "low_resolution")
    assert df.at["cat/tiny.png", score_col("low_resolution")] == pytest.approx(16 / DATASET_SIZE)
    assert df.at["cat/img_00.jpg", score_col("low_resolution")] == 1.0
    # ratio=2: short side 96 < 128 flags the normal images too
    df2, _ = _run(ctx, "low_resolution", ratio=2.0)
    assert df2.at["cat/img_00.jpg", issue_col("low_resolution")]
    assert info["target_short_side"] == DATASET_SIZE and "short_side" in info


def test_odd_aspect_and_odd_size_scores(ctx: AuditContext) -> None:
    df, _ = _run(ctx, "odd_aspect_ratio")
    assert df.at["cup/wide.jpg", score_col("odd_aspect_ratio")] == pytest.approx(64 / 256)
    assert df.at["cat/img_00.jpg", score_col("odd_aspect_ratio")] == pytest.approx(96 / 128)
    df, info = _run(ctx, "odd_size")
    z = df[extra_col("odd_size", "zscore")]
    assert z["cup/big.jpg"] > 4 and z["cat/tiny.png"] < -4
    assert df.at["cat/img_00.jpg", score_col("odd_size")] == 1.0  # median size
    assert info["median_area"] == pytest.approx(128 * 96)


def test_blank_image_is_not_blurry(ctx: AuditContext) -> None:
    df, _ = _run(ctx, "blurry")
    assert not df.at["cup/blank.png", issue_col("blurry")]
    assert df.at["cup/blank.png", score_col("blurry")] == 1.0


def test_unknown_param_raises() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        PROPERTY_CHECKS[5](treshold=0.1)


def test_properties_info(ctx: AuditContext) -> None:
    info = properties_info(ctx.records, ctx.labels, DATASET_SIZE)
    json.dumps(info)
    readable = int(ctx.records["ok"].sum())
    assert sum(info["short_side"]["counts"]) == readable == info["num_readable"]
    assert info["class_counts"] == {"cat": 14, "cup": 13}
    assert info["imbalance_ratio"] == pytest.approx(14 / 13)
    assert info["per_class"]["cat"]["readable"] == 13
    assert sum(info["per_class"]["cup"]["short_side"]["counts"]) == 13
    assert info["below_target"]["count"] == 1  # tiny.png
    assert info["per_class"]["cat"]["below_target"] == 1
    unl = properties_info(ctx.records, None, DATASET_SIZE)
    assert unl["class_counts"] == {} and unl["unlabeled"] == len(ctx.records)


def test_resolution_plot(ctx: AuditContext, tmp_path: Path) -> None:
    out = resolution_plot(ctx.records, ctx.labels, DATASET_SIZE, tmp_path / "plots/res.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1] > 200
    # unlabeled data and a dataset without readable images still render
    resolution_plot(ctx.records, None, DATASET_SIZE, tmp_path / "u.png")
    broken = ctx.records.assign(ok=False)
    assert resolution_plot(broken, ctx.labels, DATASET_SIZE, tmp_path / "b.png").exists()


def test_hostile_corpus_through_every_property_check(hostile_dir: Path, tree_checksum) -> None:
    from conftest import HOSTILE

    before = tree_checksum(hostile_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ims = load_images(hostile_dir)
    c = AuditContext(ims, AuditConfig(size=DATASET_SIZE, num_workers=0, progress=False))
    try:
        frames = {}
        for cls in PROPERTY_CHECKS:
            check = cls()
            frames[cls.name] = check.validate(check.run(c), c.paths)
    finally:
        c.close()
    unreadable = frames["unreadable"]
    expected = {p for p, reason in HOSTILE.items() if reason is not None}
    assert set(unreadable.index[unreadable[issue_col("unreadable")]]) == expected
    assert frames["low_resolution"].at["one_pixel.png", issue_col("low_resolution")]
    for name, df in frames.items():
        assert df[score_col(name)].between(0, 1).all()
    assert tree_checksum(hostile_dir) == before


# -- blurry: absolute floor + blurrier than its peers -----------------------------------


def _sharpness_ctx(sharpness: np.ndarray, labels: list[str] | None = None, gray_std: float = 0.2):
    """A context whose decode records hold the given sharpness values (the rule only)."""
    from types import SimpleNamespace

    paths = pd.Index([f"img_{i:04d}.png" for i in range(len(sharpness))], name="path")
    rec = pd.DataFrame({"ok": True, "sharpness": np.asarray(sharpness, float), "gray_std": gray_std}, index=paths)
    lab = pd.Series(labels, index=paths) if labels is not None else None
    return SimpleNamespace(records=rec, paths=paths, labels=lab)


def _blurry(ctx, **params) -> tuple[pd.DataFrame, dict]:
    from imgaudit.checks.properties import Blurry

    check = Blurry(**params)
    return check.validate(check.run(ctx), ctx.paths), check.info


def test_blurry_flags_the_soft_outlier_of_a_uniformly_soft_dataset() -> None:
    """Upscaled scans are all soft: only the one much blurrier than its peers is flagged."""
    rng = np.random.default_rng(0)
    s = np.exp(rng.normal(np.log(0.3), 0.08, 60))  # around 0.3: most below the former 0.35
    s[7] = 0.12  # blurred: 2.5x softer than its peers, above the absolute floor
    df, info = _blurry(_sharpness_ctx(s))
    flagged = np.flatnonzero(df[issue_col("blurry")].to_numpy())
    assert flagged.tolist() == [7]
    assert info["n_relative"] == 1 and info["n_hopeless"] == 0
    z = df[extra_col("blurry", "zscore")]
    assert z.iloc[7] < -2.5 and z.drop(z.index[7]).min() > -2.5
    score = df[score_col("blurry")]
    assert score.iloc[7] < 0.5 and (score.drop(score.index[7]) >= 0.5).all()
    # the former absolute rule, still available as options, flags most of the dataset
    old, _ = _blurry(_sharpness_ctx(s), threshold=0.35, relative=False)
    assert old[issue_col("blurry")].mean() > 0.5


def test_blurry_peers_are_the_class_and_the_floor_is_absolute() -> None:
    """A naturally soft class is not flagged for being softer than a sharp class, and a
    blurred image of the sharp class is flagged although it is sharper than the soft class."""
    rng = np.random.default_rng(1)
    sharp = np.exp(rng.normal(np.log(0.9), 0.15, 30))
    soft = np.exp(rng.normal(np.log(0.25), 0.15, 30))
    sharp[3] = 0.3  # blurred photo: a third of its class, but above the soft class's median
    soft[5] = 0.05  # hopeless: below the floor
    s = np.r_[sharp, soft]
    labels = ["sharp"] * 30 + ["soft"] * 30
    df, info = _blurry(_sharpness_ctx(s, labels))
    flagged = set(np.flatnonzero(df[issue_col("blurry")].to_numpy()))
    assert flagged == {3, 35}
    assert set(info["peer_median"]) == {"sharp", "soft"}
    assert info["n_hopeless"] == 1 and info["n_relative"] == 1
    # pooled over the dataset (classes too small to be peers) the two classes' spread
    # hides the blurred photo: the class is the right reference
    pooled, pinfo = _blurry(_sharpness_ctx(s, labels), min_peers=31)
    assert set(pinfo["peer_median"]) == {"(all)"}
    assert not pooled[issue_col("blurry")].iloc[3] and pooled[issue_col("blurry")].iloc[35]


def test_blurry_relative_rule_needs_peers_and_contrast() -> None:
    # too few images for a peer comparison: only the floor applies
    df, info = _blurry(_sharpness_ctx(np.r_[np.full(9, 0.9), 0.2]))
    assert not df[issue_col("blurry")].any() and info["peer_median"] == {}
    assert df[extra_col("blurry", "zscore")].isna().all()
    # identical images: a tiny deviation is no outlier (the spread has a floor, and the ratio)
    s = np.full(40, 0.5)
    s[0] = 0.49
    df, _ = _blurry(_sharpness_ctx(s))
    assert not df[issue_col("blurry")].any()
    # near-constant images are not applicable
    df, _ = _blurry(_sharpness_ctx(np.full(30, 0.01), gray_std=0.001))
    assert not df[issue_col("blurry")].any() and (df[score_col("blurry")] == 1.0).all()
