"""Out-of-fold training: folds, one prediction per image, cache, user probs, weights."""

from __future__ import annotations

import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgaudit import training
from imgaudit.columns import extra_col
from imgaudit.config import AuditConfig
from imgaudit.context import AuditContext
from imgaudit.imageset import load_images

COLOURS = {"blue": (40, 40, 200), "green": (40, 200, 40), "red": (200, 40, 40)}
#: planted label flips: (true class folder, index) -> the wrong class it is filed under
FLIPS = {("red", 0): "green", ("green", 1): "blue", ("blue", 2): "red"}


def make_colour_set(root: Path, per_class: int = 14, seed: int = 0) -> tuple[Path, list[str]]:
    """Noisy colour squares; a few filed under a wrong class; one corrupt file."""
    rng = np.random.default_rng(seed)
    flipped = []
    for cls, rgb in COLOURS.items():
        for i in range(per_class):
            arr = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (32, 32, 3)), 0, 255)
            folder = FLIPS.get((cls, i), cls)
            (root / folder).mkdir(parents=True, exist_ok=True)
            rel = f"{folder}/{cls}_{i:02d}.png"
            Image.fromarray(arr.astype(np.uint8)).save(root / rel)
            if folder != cls:
                flipped.append(rel)
    (root / "red" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root, flipped


@pytest.fixture()
def colour_set(tmp_path: Path) -> tuple[Path, list[str]]:
    return make_colour_set(tmp_path / "colours")


def context(root: Path, **options: object) -> AuditContext:
    opts = {"n_folds": 3, "num_workers": 0, "progress": False, "batch_size": 16, **options}
    return AuditContext(load_images(root), AuditConfig(**opts))


# -- folds ---------------------------------------------------------------------------------
def test_folds_are_stratified_and_keep_groups_together() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 30)
    mask = np.ones(len(labels), bool)
    mask[[5, 40]] = False
    groups = np.arange(len(labels))
    dup_sets = [[0, 1, 2], [31, 32], [60, 61, 62, 63]]
    for s in dup_sets:
        groups[s] = groups[s[0]]
    folds = training.make_folds(labels, mask, groups, 5, seed=0)
    assert (folds[~mask] == -1).all() and set(folds[mask]) == set(range(5))
    for s in dup_sets:
        assert len(set(folds[s])) == 1, "a duplicate group was split across folds"
    for c in range(3):
        counts = np.bincount(folds[mask & (labels == c)], minlength=5)
        assert counts.max() - counts.min() <= 3, counts  # stratified (groups cost a little)
    # a different seed gives a different but equally valid assignment
    other = training.make_folds(labels, mask, rng.permutation(groups), 5, seed=1)
    assert set(other[mask]) == set(range(5))


def test_duplicate_groups_merge_every_duplicates_check() -> None:
    paths = pd.Index([f"img{i}.png" for i in range(6)], name="path")
    near = pd.DataFrame({extra_col("near_duplicates", "group"): [0, 0, -1, 1, 1, -1]}, index=paths)
    exact = pd.DataFrame({extra_col("exact_duplicates", "group"): [-1, 0, 0, -1, -1, -1]}, index=paths)
    ctx = types.SimpleNamespace(paths=paths, outputs={"near_duplicates": near, "exact_duplicates": exact})
    g = training.duplicate_groups(ctx)  # type: ignore[arg-type]
    assert g[0] == g[1] == g[2]  # chained through image 1
    assert g[3] == g[4] and g[3] != g[0]
    assert len({g[5], g[0], g[3]}) == 3


# -- fast mode: one prediction per image, views, cache ------------------------------------------
def test_fast_mode_every_image_one_oof_prediction(colour_set, monkeypatch) -> None:
    root, flipped = colour_set
    fits: list[int] = []
    real_fit = training._fit_heads
    monkeypatch.setattr(training, "_fit_heads", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    ctx = context(root, label_mode="fast", pretrained=False)
    oof = ctx.oof
    ok = ctx.records["ok"].to_numpy(bool)
    assert (~ok).sum() == 1
    assert oof.mode == "fast" and oof.classes == sorted(COLOURS)
    np.testing.assert_array_equal(oof.mask, ok)
    assert (oof.labels[~ok] == -1).all()
    assert set(oof.folds[oof.mask]) == {0, 1, 2} and (oof.folds[~oof.mask] == -1).all()
    np.testing.assert_allclose(oof.probs[oof.mask].sum(axis=1), 1.0, atol=1e-6)
    assert np.isnan(oof.probs[~oof.mask]).all()
    assert oof.embeddings is not None and np.isfinite(oof.embeddings[ok]).all()
    assert not any("flip" in t.lower() or "rot" in t.lower() for t in oof.train_transforms)
    # the identity view reproduces the out-of-fold probabilities (same fold models)
    views = oof.predict_views(
        {"identity": lambda im: im, "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90)},
        progress=False,
    )
    np.testing.assert_allclose(views["identity"][oof.mask], oof.probs[oof.mask], atol=1e-6)
    assert np.isnan(views["rot90"][~oof.mask]).all()
    # planted flips rank below every clean image (colours are trivially separable)
    pos = ctx.paths.get_indexer(flipped)
    p_given = oof.probs[np.arange(len(oof.labels)), np.maximum(oof.labels, 0)]
    clean = oof.mask.copy()
    clean[pos] = False
    assert p_given[pos].max() < p_given[clean].min()
    assert len(fits) == 1

    # a second audit of the same data trains nothing and still predicts views
    ctx2 = context(root, label_mode="fast", pretrained=False)
    oof2 = ctx2.oof
    assert len(fits) == 1 and oof2.info["cached"]
    assert oof.info["pixel_head"] == 32  # 32-px images: below FAST_MIN_SIZE, pixel head on
    # ... and a second backbone scale, whose heads the cached predictor restores
    assert oof.info["extra_scales"] == list(training.FAST_EXTRA_SCALES)
    assert len(oof2._predictor.heads.extra) == len(training.FAST_EXTRA_SCALES)
    np.testing.assert_array_equal(oof2.folds, oof.folds)
    np.testing.assert_allclose(oof2.probs[oof.mask], oof.probs[oof.mask])
    again = oof2.predict_views({"identity": lambda im: im}, progress=False)["identity"]
    np.testing.assert_allclose(again[oof.mask], oof.probs[oof.mask], atol=1e-6)
    # other options miss the cache
    assert context(root, label_mode="fast", pretrained=False, seed=3).oof.info["cached"] is False
    assert len(fits) == 2


def test_duplicates_output_keeps_group_in_one_fold(colour_set) -> None:
    root, _ = colour_set
    ctx = context(root, label_mode="fast", pretrained=False)
    paths = list(ctx.paths)
    group = np.full(len(paths), -1)
    members = [paths.index("red/red_05.png"), paths.index("red/red_06.png"), paths.index("red/red_07.png")]
    group[members] = 0
    ctx.outputs["near_duplicates"] = pd.DataFrame(
        {extra_col("near_duplicates", "group"): group}, index=ctx.paths
    )
    oof = ctx.oof
    assert len(set(oof.folds[members])) == 1


def test_user_pred_probs_skip_training(colour_set, monkeypatch) -> None:
    root, _ = colour_set
    monkeypatch.setattr(training, "_run_fast", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(training, "_run_finetune", lambda *a, **k: pytest.fail("trained"))
    n = len(load_images(root).table)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=n)
    feats = rng.normal(size=(n, 4))
    ctx = context(root, pred_probs=probs, features=feats)
    oof = ctx.oof
    assert oof.mode == "user" and oof.train_transforms == []
    ok = ctx.records["ok"].to_numpy(bool)
    np.testing.assert_array_equal(oof.mask, ok)
    np.testing.assert_allclose(oof.probs[ok], probs[ok])
    assert np.isnan(oof.embeddings[~ok]).all()
    with pytest.raises(NotImplementedError):
        oof.predict_views({"identity": lambda im: im})
    with pytest.raises(ValueError, match="columns"):
        _ = context(root, pred_probs=probs[:, :2]).oof


# -- pretrained="auto" ----------------------------------------------------------------------------
def test_pretrained_auto_without_weights_warns_and_trains_from_scratch(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(training, "_warned_pretrained", set())
    with pytest.warns(UserWarning, match="training from scratch"):
        assert training.resolve_pretrained("resnet18", "auto") is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warns once per arch
        assert training.resolve_pretrained("resnet18", "auto") is False
    assert training.resolve_pretrained("resnet18", False) is False


def test_pretrained_auto_loads_cached_checkpoint(tmp_path, monkeypatch) -> None:
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(training, "_warned_pretrained", set())
    torch.manual_seed(123)
    saved = torchvision.models.resnet18().state_dict()
    path = training.weights_path("resnet18")
    assert path is not None and path.name.startswith("resnet18-")
    path.parent.mkdir(parents=True)
    torch.save(saved, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert training.resolve_pretrained("resnet18", "auto") is True
    model = training.build_torchvision("resnet18", True)
    torch.testing.assert_close(model.conv1.weight, saved["conv1.weight"])


# -- fast heads ----------------------------------------------------------------------------
def _blobs(n: int = 90, d: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n // 3)
    centres = rng.normal(0, 3, (3, d))
    return centres[labels] + rng.normal(0, 1, (n, d)), labels


def test_fast_heads_with_pixel_head_average_and_round_trip() -> None:
    raw, labels = _blobs()
    rng = np.random.default_rng(1)
    pixels = (raw[:, :8] * 10 + rng.normal(0, 5, (len(raw), 8))).astype(np.float32)
    mask = np.ones(len(labels), bool)
    folds = training.make_folds(labels, mask, np.arange(len(labels)), 3, seed=0)
    rows = np.arange(len(labels))
    heads, emb = training._fit_heads(raw, rows, labels, mask, folds, 3, 0, False, pixels)
    assert heads.has_pixels and len(heads.pix_coef) == 3
    both = heads.probs(0, emb, 3, pixels)
    only = heads.probs(0, emb, 3)
    assert not np.allclose(both, only)
    np.testing.assert_allclose(both.sum(axis=1), 1.0)
    # the mixture is the mean of the two heads' probabilities
    z = (pixels - heads.pix_mean) / heads.pix_scale
    pix_only = heads._softmax(z @ heads.pix_coef[0].T + heads.pix_intercept[0], heads.class_idx[0], 3)
    np.testing.assert_allclose(both, (only + pix_only) / 2)
    again = training._FastHeads.from_bytes(heads.to_bytes())
    np.testing.assert_allclose(again.probs(2, emb, 3, pixels), heads.probs(2, emb, 3, pixels))
    # without pixels the heads hold none
    plain, _ = training._fit_heads(raw, rows, labels, mask, folds, 3, 0, False)
    assert not plain.has_pixels
    assert not training._FastHeads.from_bytes(plain.to_bytes()).has_pixels


def test_pixel_pca_and_extra_scale_heads_average_and_round_trip(monkeypatch) -> None:
    raw, labels = _blobs()
    raw2, _ = _blobs(seed=3)  # "another scale": other features of the same images
    rng = np.random.default_rng(1)
    pixels = (raw[:, :8] * 10 + rng.normal(0, 5, (len(raw), 8))).astype(np.float32)
    monkeypatch.setattr(training, "FAST_PIXEL_PCA_DIMS", 4)
    mask = np.ones(len(labels), bool)
    folds = training.make_folds(labels, mask, np.arange(len(labels)), 3, seed=0)
    rows = np.arange(len(labels))
    heads, emb = training._fit_heads(raw, rows, labels, mask, folds, 3, 0, False, pixels, [raw2])
    # the pixel head reads 4 principal components of the 8 standardised pixels
    assert heads.pix_components is not None and heads.pix_components.shape == (4, 8)
    assert heads.pix_coef[0].shape == (3, 4)
    assert len(heads.extra) == 1 and heads.n_heads == 3 and len(heads.extra[0].coef) == 3
    assert not heads.extra[0].has_pixels
    p = heads.probs(1, emb, 3, pixels, [raw2])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # the mixture is the plain mean of the three heads
    main = heads._softmax(emb @ heads.coef[1].T + heads.intercept[1], heads.class_idx[1], 3)
    pix = heads._softmax(
        heads.embed_pixels(pixels) @ heads.pix_coef[1].T + heads.pix_intercept[1],
        heads.class_idx[1], 3,
    )
    sub = heads.extra[0]
    scale2 = sub.probs(1, sub.embed(raw2.astype(np.float64)), 3)
    np.testing.assert_allclose(p, (main + pix + scale2) / 3)
    # and it survives the cache
    again = training._FastHeads.from_bytes(heads.to_bytes())
    assert again.n_heads == 3
    np.testing.assert_allclose(again.probs(1, emb, 3, pixels, [raw2]), p)
    # the blobs are separable from both sides: every head beats chance out of fold
    oof = training._heads_oof_probs(heads, emb, pixels, rows, mask, folds, 3, 3, [raw2])
    assert (oof.argmax(axis=1) == labels).mean() > 0.9


def test_fast_heads_degenerate_fold_predicts_its_only_class() -> None:
    raw, labels = _blobs(n=30)
    mask = np.ones(len(labels), bool)
    folds = np.where(labels == 0, 1, 0)  # fold 0 trains on class 0 only
    heads, emb = training._fit_heads(raw, np.arange(30), labels, mask, folds, 2, 0, False, raw[:, :4])
    p = heads.probs(0, emb, 3, raw[:, :4])
    np.testing.assert_allclose(p[:, 0], 1.0)


@pytest.mark.parametrize(("side", "expected"), [(28, 28), (48, 32), (64, 0), (300, 0)])
def test_pixel_head_only_for_low_resolution(side: int, expected: int) -> None:
    records = pd.DataFrame({"width": [side] * 4, "height": [side + 5] * 4, "ok": True})
    ctx = types.SimpleNamespace(records=records, config=AuditConfig(pretrained=False, num_workers=0))
    plan = training.make_plan(ctx, np.ones(4, bool))  # type: ignore[arg-type]
    assert plan.pixel_size == expected
    # low-resolution images are also read at a second backbone scale
    assert plan.scales == (training.FAST_EXTRA_SCALES if expected else ())
    assert plan.size == min(max(side, training.FAST_MIN_SIZE), 224)  # config size 224


# -- fine-tune mode --------------------------------------------------------------------------------
@pytest.mark.slow
def test_finetune_mode_end_to_end(colour_set, monkeypatch) -> None:
    root, flipped = colour_set
    fits: list[int] = []
    real = training._train_fold
    monkeypatch.setattr(training, "_train_fold", lambda *a, **k: fits.append(1) or real(*a, **k))
    opts = {"label_mode": "finetune", "pretrained": False, "n_folds": 2, "epochs": 2,
            "arch": "resnet18", "lr": 3e-3, "seed": 0}
    ctx = context(root, **opts)
    oof = ctx.oof
    ok = ctx.records["ok"].to_numpy(bool)
    assert oof.mode == "finetune" and len(fits) == 2
    np.testing.assert_array_equal(oof.mask, ok)
    assert set(oof.folds[ok]) == {0, 1}
    np.testing.assert_allclose(oof.probs[ok].sum(axis=1), 1.0, atol=1e-5)
    assert oof.info["size"] == 32  # median short side, clamped to >= 32
    # CNN mixed with the fast heads: backbone, each extra backbone scale and (images
    # under 64 px) the pixel head
    assert oof.info["extra_scales"] == list(training.FAST_EXTRA_SCALES)
    assert oof.info["ensemble_heads"] == 2 + len(training.FAST_EXTRA_SCALES)
    assert not any("flip" in t.lower() or "rot" in t.lower() for t in oof.train_transforms)
    views = oof.predict_views({"identity": lambda im: im}, progress=False)
    np.testing.assert_allclose(views["identity"][ok], oof.probs[ok], atol=1e-5)
    # flipped images get a lower probability for their given label than clean ones
    p_given = oof.probs[np.arange(len(oof.labels)), np.maximum(oof.labels, 0)]
    pos = ctx.paths.get_indexer(flipped)
    clean = ok.copy()
    clean[pos] = False
    assert p_given[pos].mean() < p_given[clean].mean()
    # cache hit: nothing trains, fold models reload for predict_views
    oof2 = context(root, **opts).oof
    assert len(fits) == 2 and oof2.info["cached"]
    again = oof2.predict_views({"identity": lambda im: im}, progress=False)["identity"]
    np.testing.assert_allclose(again[ok], oof.probs[ok], atol=1e-5)
