"""Rotation and flip probe: is rotation/flip augmentation safe, and which images are rotated?

Every image is predicted, under each *view* (identity, right-angle rotations, flips and
small rotations), by the out-of-fold model that never trained on it (see
:meth:`imgaudit.training.OOF.predict_views`). Those models were trained without rotations
and flips, so how their accuracy holds up under a view measures how much the label
depends on that transform:

- a view after which the model still recognises the given labels (accuracy retained
  relative to the identity view) is **safe** as a training augmentation: the data looks
  the same either way, and augmenting with it teaches the model nothing false;
- a view that destroys the accuracy (upright garments turned sideways, a "6" turned into
  a "9") is **unsafe**: the orientation carries information the model uses; so is a view
  that *swaps* two classes (class a's images read as b and b's as a, the 6 <-> 9 case)
  and wrecks one of them, however little the dataset-wide accuracy moves;
- between the two, the cost is read by where it goes: when every class pair the view
  creates is one-way (mirrored ankle boots read as "bag" while mirrored bags stay bags),
  the model has simply never seen that rendering; no label changes meaning, and
  augmenting with the view is what teaches it, so the verdict is **safe**. With a swap
  among the pairs, or too little evidence, the verdict is **unclear**.

Images that are themselves stored rotated (a sideways photo, a lost EXIF orientation) are
found by a self-supervised orientation head (RotNet-style): the frozen backbone's features
of the four right-angle views of the other folds' images teach linear heads "which
rotation is this view", one per class and one pooled over all classes; each image's four
views then vote, out of fold, on how it is stored (:func:`orientation_heads`,
:func:`combined_loglik`), against a prior that is the dataset's own estimated share of
rotated images (:func:`rotation_prior`). A confident "not upright"
(:func:`orientation_posterior`) is flagged, with the rotation that uprights it, except at
an angle under which the label model still recognises the image's class
(:func:`symmetric_angles`: a 0 or an 8 upside down is neither detectable nor harmful).

Angle convention: every angle here is in **degrees counter-clockwise**, as in PIL's
``Image.rotate(angle)``. The view ``rot90`` is ``img.transpose(Image.Transpose.ROTATE_90)``
(= ``img.rotate(90, expand=True)``), and ``rotation_suggested == 90`` means
``img.rotate(90, expand=True)`` brings the image upright.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
from PIL import Image

from ..columns import extra_col, issue_col, score_col
from .base import Check, SkipCheck

if TYPE_CHECKING:
    from ..context import AuditContext

logger = logging.getLogger(__name__)

#: the view that leaves the image alone; every other view is compared with it
IDENTITY = "identity"
#: right-angle rotations, name -> degrees counter-clockwise
RIGHT_ANGLES: dict[str, int] = {"rot90": 90, "rot180": 180, "rot270": 270}
FLIPS: tuple[str, ...] = ("flip_h", "flip_v")

VERDICTS = ("safe", "unsafe", "unclear")

_EPS = 1e-7


# ---------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------
def small_rotation_name(angle: float) -> str:
    """Name of the small-rotation view by ``angle`` degrees counter-clockwise: ``rot+10``."""
    return f"rot{angle:+g}"


def rotate_reflect(img: Image.Image, angle: float) -> Image.Image:
    """Rotate ``img`` by ``angle`` degrees counter-clockwise about its centre, same size.

    The corners the rotation uncovers are filled by reflection, as fastai's ``Rotate``
    does (``F.grid_sample(padding_mode="reflection", align_corners=True)`` mirrors about
    the centres of the edge pixels, which is ``scipy.ndimage``'s ``"mirror"`` mode), with
    bilinear interpolation. Black corners would be a cue the model could read as
    "rotated"; fastai never shows a model black corners by default, so neither do we.
    """
    from scipy import ndimage

    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32)
    # axes=(1, 0) with a positive angle turns the picture counter-clockwise as displayed
    # (row 0 at the top), matching PIL's Image.rotate.
    out = ndimage.rotate(arr, angle, axes=(1, 0), reshape=False, order=1, mode="mirror")
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode=img.mode)


def _identity(img: Image.Image) -> Image.Image:
    return img


def _transpose(method: Image.Transpose) -> Callable[[Image.Image], Image.Image]:
    def view(img: Image.Image) -> Image.Image:
        return img.transpose(method)

    return view


def _small_rotation(angle: float) -> Callable[[Image.Image], Image.Image]:
    def view(img: Image.Image) -> Image.Image:
        return rotate_reflect(img, angle)

    return view


def make_views(small_angles: Sequence[float] = (10, 30)) -> dict[str, Callable[[Image.Image], Image.Image]]:
    """The probe's views as PIL callables, keyed by view name.

    ``identity``, ``rot90``/``rot180``/``rot270`` (lossless, counter-clockwise),
    ``flip_h`` (mirror left-right), ``flip_v`` (upside-down mirror), and for each
    ``a`` in ``small_angles`` the views ``rot+a`` and ``rot-a`` (:func:`rotate_reflect`).
    """
    views: dict[str, Callable[[Image.Image], Image.Image]] = {
        IDENTITY: _identity,
        "rot90": _transpose(Image.Transpose.ROTATE_90),
        "rot180": _transpose(Image.Transpose.ROTATE_180),
        "rot270": _transpose(Image.Transpose.ROTATE_270),
        "flip_h": _transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "flip_v": _transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    }
    for a in small_angles:
        a = abs(float(a))
        if a == 0 or a % 90 == 0:
            raise ValueError(f"small rotation angles must not be multiples of 90, got {a}")
        views[small_rotation_name(a)] = _small_rotation(a)
        views[small_rotation_name(-a)] = _small_rotation(-a)
    return views


def view_family(view: str) -> str:
    """``"right_angle"``, ``"flip_h"``, ``"flip_v"``, ``"small_rotation"`` or ``"identity"``."""
    if view == IDENTITY:
        return "identity"
    if view in RIGHT_ANGLES:
        return "right_angle"
    if view in FLIPS:
        return view
    if re.fullmatch(r"rot[+-]\d+(\.\d+)?", view):
        return "small_rotation"
    raise ValueError(f"unknown view {view!r}")


# Augmentations named in OOF.train_transforms that make a view's probe meaningless: a
# model trained with the transform is invariant to it by construction.
_TRAINED_PATTERNS: dict[str, re.Pattern[str]] = {
    "right_angle": re.compile(r"dihedral|rot(ate|ation)?_?90|rot90|rotate\(90", re.I),
    "small_rotation": re.compile(r"rotat|dihedral|max_rotate", re.I),
    "flip_v": re.compile(r"dihedral|flip_?vert|vflip|vertical|flip_?v\b|top_?bottom", re.I),
    "flip_h": re.compile(r"dihedral|\bflip\b|flipitem|hflip|horizontal|flip_?h\b|left_?right", re.I),
}


def trained_families(train_transforms: Sequence[str]) -> set[str]:
    """View families the fold models were trained with, read from their transform names."""
    found: set[str] = set()
    for t in train_transforms:
        for fam, pat in _TRAINED_PATTERNS.items():
            if pat.search(str(t)):
                found.add(fam)
    return found


# ---------------------------------------------------------------------------------------
# statistics (pure functions over probability arrays)
# ---------------------------------------------------------------------------------------
def mean_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise KL(p || q) in nats, with probabilities clipped away from 0."""
    p = np.clip(p, _EPS, 1.0)
    q = np.clip(q, _EPS, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    q = q / q.sum(axis=1, keepdims=True)
    return np.sum(p * (np.log(p) - np.log(q)), axis=1)


def retention(
    correct_id: np.ndarray,
    correct_view: np.ndarray,
    chance: float,
    z: float,
) -> dict[str, Any]:
    """How much of the above-chance accuracy a view keeps, with a paired interval.

    ``retention = (acc_view - chance) / (acc_identity - chance)``: 1 when the view costs
    nothing, 0 when it drops the model to chance. The interval comes from the paired
    per-image differences ``correct_id - correct_view`` (normal approximation, ``z``
    standard errors); the identity accuracy is treated as known.
    """
    n = int(correct_id.size)
    acc0 = float(correct_id.mean()) if n else float("nan")
    accv = float(correct_view.mean()) if n else float("nan")
    margin = acc0 - chance
    out = {"n": n, "accuracy": accv, "accuracy_identity": acc0, "chance": chance}
    if n == 0 or margin <= 0:
        out.update(retention=float("nan"), retention_low=float("nan"), retention_high=float("nan"))
        return out
    d = correct_id.astype(float) - correct_view.astype(float)
    drop = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    out.update(
        retention=1.0 - drop / margin,
        retention_low=1.0 - (drop + z * se) / margin,
        retention_high=1.0 - (drop - z * se) / margin,
    )
    return out


def verdict(stats: Mapping[str, float], safe_retention: float, unsafe_retention: float,
            min_identity_margin: float) -> tuple[str, str]:
    """``("safe"|"unsafe"|"unclear", evidence)`` from :func:`retention` statistics."""
    n = stats["n"]
    acc0, accv, chance = stats["accuracy_identity"], stats["accuracy"], stats["chance"]
    if n == 0:
        return "unclear", "no labeled image with a prediction"
    if not acc0 - chance >= min_identity_margin:
        return "unclear", (
            f"identity accuracy {acc0:.3f} is within {min_identity_margin} of chance "
            f"({chance:.3f}): the model learned too little to tell"
        )
    r, lo, hi = stats["retention"], stats["retention_low"], stats["retention_high"]
    ev = (
        f"accuracy {accv:.3f} vs {acc0:.3f} as stored (chance {chance:.3f}): retains "
        f"{r:.0%} of the above-chance accuracy (interval {lo:.0%}..{hi:.0%}, n={n})"
    )
    if r >= safe_retention and lo >= unsafe_retention:
        return "safe", f"{ev}; >= {safe_retention:.0%} needed for safe"
    if r < unsafe_retention and hi < safe_retention:
        return "unsafe", f"{ev}; < {unsafe_retention:.0%} is unsafe"
    return "unclear", (
        f"{ev}; between the thresholds ({unsafe_retention:.0%} unsafe, {safe_retention:.0%} "
        "safe) or too uncertain"
    )


def class_pairs(
    labels: np.ndarray,
    pred_id: np.ndarray,
    pred_view: np.ndarray,
    classes: Sequence[str],
    min_count: int,
    min_fraction: float,
    max_pairs: int,
) -> list[dict[str, Any]]:
    """Class pairs a view turns into each other.

    Among images whose identity prediction equals their given label, count how often the
    view's prediction is another class ``b`` for each given class ``a``. Pairs seen at
    least ``min_count`` times and in at least ``min_fraction`` of class ``a``'s correctly
    predicted images are returned, most frequent first.
    """
    k = len(classes)
    ok = (pred_id == labels) & (pred_view != labels)
    base = np.bincount(labels[pred_id == labels], minlength=k)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (labels[ok], pred_view[ok]), 1)
    rows = []
    for a, b in zip(*np.nonzero(counts), strict=True):
        c = int(counts[a, b])
        frac = c / max(int(base[a]), 1)
        if c >= min_count and frac >= min_fraction:
            rows.append({"from": classes[a], "to": classes[b], "count": c, "fraction": frac})
    rows.sort(key=lambda r: (-r["count"], r["from"], r["to"]))
    return rows[:max_pairs]


def swapped_classes(pairs: Sequence[Mapping[str, Any]]) -> dict[str, set[str]]:
    """Classes a view swaps: ``{a: {b, ...}}`` for every pair seen both as a -> b and b -> a.

    ``pairs`` are :func:`class_pairs` rows (already filtered by count and fraction). A swap
    is what a label-changing view looks like (6 <-> 9 under rot180, b <-> d under a
    mirror); a one-way pair (a -> b only) is a model meeting a rendering it never saw.
    """
    seen = {(r["from"], r["to"]) for r in pairs}
    out: dict[str, set[str]] = {}
    for a, b in seen:
        if (b, a) in seen:
            out.setdefault(a, set()).add(b)
    return out


def swaps_text(swaps: Mapping[str, set[str]], among: Sequence[str]) -> str:
    return ", ".join(f"{a} <-> {b}" for a in among for b in sorted(swaps.get(a, ())))


def probe_statistics(
    view_probs: Mapping[str, np.ndarray],
    labels: np.ndarray,
    classes: Sequence[str],
    params: RotationCheck.Params,
    trained_with: set[str] | None = None,
) -> dict[str, Any]:
    """Dataset- and class-level findings of the probe (JSON-serialisable).

    Parameters
    ----------
    view_probs
        ``{view: (N, K) probabilities}``; must contain ``"identity"``. Rows that are NaN
        in any view, and rows with ``labels < 0``, are left out.
    labels
        ``int`` (N,) given label index per image, -1 where unlabeled.
    classes
        Class names, the column order of the probabilities.
    params
        Thresholds (:class:`RotationCheck.Params`).
    trained_with
        View families the models were trained with (:func:`trained_families`): their
        views get an ``"unclear"`` verdict, since the models are invariant by training.

    Returns
    -------
    dict
        ``views`` (per view: accuracy, accuracy_identity, retention and its interval,
        agreement with the identity prediction, mean KL divergence from it, verdict,
        evidence), ``per_class`` (``{class: {view: same statistics}}``), ``pairs``
        (``{view: [{"from", "to", "count", "fraction"}]}``), ``verdicts``
        (``{view: verdict}``), ``sensitive``, ``thresholds``.
    """
    if IDENTITY not in view_probs:
        raise ValueError("view_probs must contain the 'identity' view")
    trained_with = trained_with or set()
    labels = np.asarray(labels)
    k = len(classes)
    p0 = np.asarray(view_probs[IDENTITY], dtype=float)
    usable = labels >= 0
    for p in view_probs.values():
        usable &= np.isfinite(np.asarray(p, dtype=float)).all(axis=1)
    y = labels[usable]
    p0u = p0[usable]
    pred0 = p0u.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    correct0 = pred0 == y
    # Chance is a uniform guess; a view that wrecks the image drives accuracy towards it.
    chance = 1.0 / k if k else 0.0
    thr = dict(
        safe_retention=params.safe_retention,
        unsafe_retention=params.unsafe_retention,
        z=params.z,
        min_identity_margin=params.min_identity_margin,
        min_class_count=params.min_class_count,
        class_wrecked_retention=params.class_wrecked_retention,
    )

    views: dict[str, Any] = {}
    per_class: dict[str, dict[str, Any]] = {c: {} for c in classes}
    pairs: dict[str, list[dict[str, Any]]] = {}
    verdicts: dict[str, str] = {}
    for name, probs in view_probs.items():
        if name == IDENTITY:
            continue
        fam = view_family(name)
        pv = np.asarray(probs, dtype=float)[usable]
        predv = pv.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
        correctv = predv == y
        kl = mean_kl(p0u, pv) if len(y) else np.zeros(0)
        st = retention(correct0, correctv, chance, params.z)
        st["agreement"] = float((predv == pred0).mean()) if len(y) else float("nan")
        st["mean_kl"] = float(kl.mean()) if len(y) else float("nan")
        v, ev = verdict(st, params.safe_retention, params.unsafe_retention, params.min_identity_margin)
        all_pairs = class_pairs(
            y, pred0, predv, classes, params.min_pair_count, params.min_pair_fraction, k * k
        )
        swaps = swapped_classes(all_pairs)

        unsafe_classes: list[str] = []
        wrecked: list[str] = []
        for ci, cname in enumerate(classes):
            m = y == ci
            cs = retention(correct0[m], correctv[m], chance, params.z)
            cs["agreement"] = float((predv[m] == pred0[m]).mean()) if m.any() else float("nan")
            cs["mean_kl"] = float(kl[m].mean()) if m.any() else float("nan")
            if cs["n"] >= params.min_class_count:
                cv, cev = verdict(cs, params.safe_retention, params.unsafe_retention,
                                  params.min_identity_margin)
            else:
                cv, cev = "unclear", f"only {cs['n']} images (< {params.min_class_count})"
            cs["verdict"], cs["evidence"] = cv, cev
            per_class[cname][name] = cs
            if cv == "unsafe":
                unsafe_classes.append(cname)
                if cs["retention_high"] < params.class_wrecked_retention:
                    wrecked.append(cname)
        # One class wrecked by a swap is enough: augmenting with the view would corrupt
        # that class (a 6 becomes a 9 and a 9 a 6) even when the dataset-wide accuracy
        # barely moves. A class that only collapses one way (a mirrored boot read as a bag
        # by a model that never saw one, while mirrored bags stay bags) is reported, not
        # decisive: the view is new to the model yet keeps the label.
        wrecked_swapped = [c for c in wrecked if c in swaps]
        if v != "unsafe" and wrecked_swapped:
            v = "unsafe"
            ev = f"{ev}; but it swaps and wrecks class(es) {wrecked_swapped} ({swaps_text(swaps, wrecked_swapped)})"
        elif (v == "unclear" and not swaps and st["retention_low"] >= params.unsafe_retention
              and st["accuracy_identity"] - chance >= params.min_identity_margin):
            v = "safe"
            ev = (
                f"{ev}; the accuracy it costs goes one way only (no two classes swap), so the "
                "model has not seen this rendering but no label changes meaning: safe to augment"
            )
            if unsafe_classes:
                ev = f"{ev} (hurt most: {unsafe_classes})"
        elif unsafe_classes:
            ev = f"{ev}; classes hurt most: {unsafe_classes}"
        elif swaps and v == "unclear":
            ev = f"{ev}; classes swap ({swaps_text(swaps, sorted(swaps))})"
        if fam in trained_with:
            v = "unclear"
            ev = f"the fold models were trained with this augmentation, so they are invariant to it by construction; {ev}"
        st["family"] = fam
        st["angle"] = _view_angle(name)
        st["verdict"], st["evidence"] = v, ev
        st["unsafe_classes"] = unsafe_classes
        st["wrecked_classes"] = wrecked
        st["swapped_classes"] = {c: sorted(o) for c, o in sorted(swaps.items())}
        views[name] = st
        verdicts[name] = v
        pairs[name] = all_pairs[: params.max_pairs]

    sensitive = any(verdicts.get(n) == "unsafe" for n in RIGHT_ANGLES)
    return {
        "n_images": int(usable.sum()),
        "accuracy_identity": float(correct0.mean()) if len(y) else float("nan"),
        "views": views,
        "per_class": per_class,
        "pairs": pairs,
        "verdicts": verdicts,
        "sensitive": bool(sensitive),
        "thresholds": thr,
        "angle_convention": "degrees counter-clockwise, as PIL Image.rotate(angle)",
    }


def _view_angle(name: str) -> float | None:
    if name in RIGHT_ANGLES:
        return float(RIGHT_ANGLES[name])
    if view_family(name) == "small_rotation":
        return float(name[3:])
    return None


#: the right-angle views in orientation order: index s <-> stored "rotated by 90*s ccw"
ORIENT_VIEWS: tuple[str, ...] = (IDENTITY, "rot90", "rot180", "rot270")


def _lda() -> Any:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    # Ledoit-Wolf shrinkage: a regularised linear head with no strength to tune, and a
    # closed-form fit (fast enough to train one head per class and fold)
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")


def class_or_pooled(per_class: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    """Per image, the class head's readings where its class has one, else the pooled head's."""
    own = np.isfinite(per_class).all(axis=(1, 2))
    return np.where(own[:, None, None], per_class, pooled)


def orientation_head_probs(
    view_features: Sequence[np.ndarray], labels: np.ndarray, folds: np.ndarray, **options: Any
) -> np.ndarray:
    """(N, 4, 4) readings of :func:`orientation_heads` (same arguments): the class head
    where the image's class has one, else the pooled head (:func:`class_or_pooled`)."""
    return class_or_pooled(*orientation_heads(view_features, labels, folds, **options))


def orientation_heads(
    view_features: Sequence[np.ndarray],
    labels: np.ndarray,
    folds: np.ndarray,
    min_class_images: int = 20,
    dims: int = 256,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold "which rotation is this view" readings (RotNet-style heads): ``(per_class, pooled)``.

    Self-supervised orientation classification (Gidaris et al. 2018, "Unsupervised
    representation learning by predicting image rotations") on frozen features: the
    four right-angle views of every image of the *other* folds are examples of "rotated
    by 0, 90, 180, 270 degrees ccw". Most stored images are upright, so the few that
    are not are label noise to the head. The head is class-conditional: one per given
    class (what "upright" looks like differs between a boot and a bag), trained on that
    class's images of the other folds (``per_class``; NaN for unlabeled images and for
    classes with fewer than ``min_class_images`` such images). ``pooled`` is one head trained on
    every class's views of the other folds, for every image.

    Parameters
    ----------
    view_features
        Four (N, D) feature arrays, the views in :data:`ORIENT_VIEWS` order.
    labels
        (N,) given label index, -1 where unlabeled.
    folds
        (N,) fold of each image (its head trains on the other folds); -1: left out.
    min_class_images
        Fewest training images a class needs for its own head.
    dims
        Features are standardised and reduced by PCA (fitted on all views, label-free)
        to at most this many dimensions.
    seed
        Seed of the PCA.

    Returns
    -------
    tuple of np.ndarray
        ``(per_class, pooled)``, each (N, 4, 4): ``[i, j, r]`` = probability that view
        ``j`` of image ``i`` shows an upright image rotated by ``90 * r`` degrees ccw;
        NaN rows where not computable.
    """
    from sklearn.decomposition import PCA

    if len(view_features) != 4:
        raise ValueError(f"need the features of the 4 right-angle views, got {len(view_features)}")
    x = [np.asarray(f, dtype=np.float64) for f in view_features]
    labels = np.asarray(labels)
    folds = np.asarray(folds)
    n = labels.shape[0]
    out = np.full((n, 4, 4), np.nan)
    pooled_out = np.full((n, 4, 4), np.nan)
    if x[0].ndim != 2 or x[0].shape[1] == 0:
        return out, pooled_out
    ok = (folds >= 0) & np.all([np.isfinite(xi).all(axis=1) for xi in x], axis=0)
    if len(np.unique(folds[ok])) < 2:
        return out, pooled_out
    allx = np.concatenate([xi[ok] for xi in x])
    mean = allx.mean(axis=0)
    scale = allx.std(axis=0)
    scale[scale < 1e-8] = 1.0
    d = int(min(dims, allx.shape[0] - 1, allx.shape[1]))
    pca = PCA(n_components=max(d, 1), random_state=seed).fit((allx - mean) / scale)
    z = [np.zeros((n, pca.n_components_)) for _ in x]
    for zi, xi in zip(z, x, strict=True):
        zi[ok] = pca.transform((xi[ok] - mean) / scale)
    rot = np.arange(4)

    def fit(rows: np.ndarray) -> Any:
        return _lda().fit(np.concatenate([zi[rows] for zi in z]), np.repeat(rot, int(rows.sum())))

    for f in np.unique(folds[ok]):
        train, test = ok & (folds != f), ok & (folds == f)
        pooled = fit(train)
        for j in range(4):
            pooled_out[test, j] = pooled.predict_proba(z[j][test])
        for c in np.unique(labels[test]):
            rows = test & (labels == c)
            tr_c = train & (labels == c)
            if c >= 0 and tr_c.sum() >= min_class_images:
                head = fit(tr_c)
                for j in range(4):
                    out[rows, j] = head.predict_proba(z[j][rows])
    return out, pooled_out


def combined_loglik(
    per_class: np.ndarray, pooled: np.ndarray, class_weight: float = 0.5
) -> np.ndarray:
    """(N, 4) orientation log-likelihood from both heads: pooled + ``class_weight`` x class.

    The class head knows what upright looks like for *this* class (a boot's sole, a
    6's loop), but it is trained on a few tens to hundreds of images and memorises
    them: on the 404-image digits demo (about 32 training images per class) it read
    one in eight upright 0s, 1s and 8s as confidently upside down. The pooled head
    learns "upright" from every class at once and stays cautious where classes
    disagree, but misses class-specific cues. Adding the pooled head's log-likelihood
    to a down-weighted class head's (:func:`orientation_loglik` of each) lets a
    rotation be claimed only when the class cue is not contradicted by the pooled
    head. ``class_weight`` 0.5 was chosen on the demo, the unit-test digits and the
    Fashion-MNIST benchmark (``benchmarks/rotation.py``) together; images without a
    class head use the pooled head alone.
    """
    llp = orientation_loglik(pooled)
    llc = orientation_loglik(per_class)
    has = np.isfinite(llc).all(axis=1)
    return llp + class_weight * np.where(has[:, None], llc, 0.0)


def symmetric_angles(
    stats: Mapping[str, Any],
    classes: Sequence[str],
    params: RotationCheck.Params,
    loglik: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, list[int]]:
    """Angles at which a class looks like itself, per class: ``{class: [90, ...]}``.

    Two signals must agree before an angle ``a`` is given up for a class:

    - the out-of-fold label model still recognises the class after rotating its images
      by ``a`` (the probe's per-class verdict for that view is ``"safe"``: a 0 or an 8
      upside down, a shirt upside down); classes with too few images for a verdict of
      their own (``min_class_count``) follow the dataset-wide verdict of the view;
    - and, when ``loglik`` and ``labels`` are given, the orientation heads read the
      class's images as "stored at ``a``" more often than at the other two right angles
      (one-sided binomial test at level ``symmetry_p`` on the counts of images whose
      ``loglik`` favours that angle over upright). Images stored rotated by accident
      have no reason to favour one angle within one class; a symmetry of the class
      does. Without this, a class the label model reads either way but whose
      orientation the heads do tell apart (sandals upside down on Fashion-MNIST) would
      lose its real finds.

    An image of such a class stored rotated by ``a`` is hard to tell from an upright one
    (the heads' readings at ``a`` are mostly wrong) and harmless to training, which reads
    it as its class anyway: the per-image check does not claim that angle for that class.
    """
    from scipy.stats import binomtest

    out: dict[str, list[int]] = {}
    per_class = stats.get("per_class", {})
    views = stats.get("views", {})
    ll = None if loglik is None else np.asarray(loglik, dtype=float)
    for ci, c in enumerate(classes):
        angles = []
        if ll is not None and labels is not None:
            m = (np.asarray(labels) == ci) & np.isfinite(ll).all(axis=1)
            reads = [int((ll[m, k] > ll[m, 0]).sum()) for k in range(4)]
        else:
            reads = None
        for view, angle in RIGHT_ANGLES.items():
            st = per_class.get(c, {}).get(view)
            if st is not None and st.get("n", 0) >= params.min_class_count:
                v = st.get("verdict")
            else:
                v = views.get(view, {}).get("verdict")
            if v != "safe":
                continue
            if reads is not None:
                k = angle // 90
                total = reads[1] + reads[2] + reads[3]
                if reads[k] == 0 or binomtest(reads[k], total, 1 / 3, alternative="greater").pvalue >= params.symmetry_p:
                    continue
            angles.append(angle)
        if angles:
            out[str(c)] = angles
    return out


def drop_angles(
    posterior: np.ndarray, labels: np.ndarray, classes: Sequence[str], angles: Mapping[str, Sequence[int]]
) -> np.ndarray:
    """Fold the posterior of "stored rotated by a" into "upright" for the classes in ``angles``.

    ``angles`` as from :func:`symmetric_angles`; rows of other classes are unchanged.
    """
    post = np.array(posterior, dtype=float, copy=True)
    labels = np.asarray(labels)
    for ci, c in enumerate(classes):
        for a in angles.get(str(c), ()):
            s = (int(a) // 90) % 4
            rows = (labels == ci) & np.isfinite(post).all(axis=1)
            post[rows, 0] += post[rows, s]
            post[rows, s] = 0.0
    # rounding can push a folded row a hair past 1
    fin = np.isfinite(post).all(axis=1)
    post[fin] = np.clip(post[fin], 0.0, 1.0)
    return post


def orientation_loglik(view_rot_probs: np.ndarray) -> np.ndarray:
    """(N, 4) log-likelihood of each stored orientation from the per-view readings.

    An image stored rotated by ``90 s`` ccw shows rotation ``s + j`` in its view ``j``.
    The four views' log-probabilities are *averaged*, not summed: they are four
    renderings of one picture, not independent evidence (a sum counts an ambiguous
    picture four times and makes the posterior overconfident). This choice was made on
    the Fashion-MNIST benchmark (``benchmarks/rotation.py``), comparing the sum with the
    mean: with the sum, upright bags and patterned dresses the head reads as sideways
    were flagged (precision 0.86-0.89 at 1500 and 3000 images, recall 0.98-1.0); with
    the mean, precision 0.96-1.0 at recall 0.91-1.0.
    """
    q = np.log(np.clip(np.asarray(view_rot_probs, dtype=float), 1e-12, 1.0))
    ll = np.zeros(q.shape[:1] + (4,))
    for s in range(4):
        ll[:, s] = np.mean([q[:, j, (s + j) % 4] for j in range(4)], axis=0)
    return ll


def rotation_prior(loglik: np.ndarray, max_iter: int = 500, tol: float = 1e-9) -> np.ndarray:
    """The dataset's share of images stored at each orientation, by EM on ``loglik``.

    Maximum likelihood of the mixture weights (the posteriors' mean, iterated): an
    empirical-Bayes prior, so that "rotated" needs more evidence in a dataset where
    rotated images are rare. Rows with a non-finite entry are ignored.
    """
    ll = np.asarray(loglik, dtype=float)
    ll = ll[np.isfinite(ll).all(axis=1)]
    pi = np.full(4, 0.25)
    if not len(ll):
        return pi
    ll = ll - ll.max(axis=1, keepdims=True)
    lik = np.exp(ll)
    for _ in range(max_iter):
        w = lik * pi
        w /= w.sum(axis=1, keepdims=True)
        new = w.mean(axis=0)
        if np.abs(new - pi).max() < tol:
            pi = new
            break
        pi = new
    return pi


def orientation_posterior(
    loglik: np.ndarray, prior: np.ndarray | None = None
) -> np.ndarray:
    """(N, 4) posterior over how each image is stored (upright, or rotated 90/180/270 ccw).

    ``prior`` defaults to :func:`rotation_prior` of ``loglik``. Column ``s``: the image
    looks like an upright one rotated by ``90 s`` degrees ccw (``rotate(360 - 90 s)``
    uprights it); NaN rows stay NaN.
    """
    ll = np.asarray(loglik, dtype=float)
    pi = rotation_prior(ll) if prior is None else np.asarray(prior, dtype=float)
    with np.errstate(divide="ignore"):
        lp = ll + np.log(pi)
    out = np.full(ll.shape, np.nan)
    fin = np.isfinite(ll).all(axis=1)
    if fin.any():
        z = lp[fin] - lp[fin].max(axis=1, keepdims=True)
        e = np.exp(z)
        out[fin] = e / e.sum(axis=1, keepdims=True)
    return out


def orientation_info(
    view_rot_probs: np.ndarray,
    posterior: np.ndarray,
    flag: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    prior: np.ndarray,
    source: str,
) -> dict[str, Any]:
    """JSON-serialisable findings of the orientation head, overall and per class.

    ``view_accuracy``: share of views whose head reading is the view's rotation taken
    as stored (out of fold; images stored rotated lower it too). A class with a low one
    is one whose orientation the head cannot read well (bags look alike any way up):
    its flags deserve a second look.
    """
    q = np.asarray(view_rot_probs, dtype=float)
    fin = np.isfinite(q).all(axis=(1, 2))
    hit = q.argmax(axis=2) == np.arange(4)

    def block(m: np.ndarray) -> dict[str, Any]:
        m = m & fin
        return {
            "n": int(m.sum()),
            "view_accuracy": float(hit[m].mean()) if m.any() else float("nan"),
            "n_flagged": int((flag & m).sum()),
        }

    labels = np.asarray(labels)
    return {
        "features": source,
        "prior": {str(90 * s): float(prior[s]) for s in range(4)},
        "estimated_rotated_share": float(1.0 - prior[0]),
        **block(np.ones(len(labels), dtype=bool)),
        "per_class": {str(c): block(labels == i) for i, c in enumerate(classes)},
        "angle_convention": "prior keys: degrees ccw the image is stored rotated by",
    }


def orientation_features_from_probs(view_probs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The views' log-probabilities as orientation features (when no backbone features).

    Used when the fold models cannot embed views: their class probabilities under each
    view still tell how a view looks to them.
    """
    return [np.log(np.clip(np.asarray(view_probs[v], dtype=float), 1e-6, 1.0)) for v in ORIENT_VIEWS]


def find_rotated(
    posterior: np.ndarray, min_posterior: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flags, scores and uprighting angles from :func:`orientation_posterior`.

    Returns
    -------
    flag, score, suggested
        ``flag`` bool (N,): the most probable orientation is not upright and has
        posterior >= ``min_posterior``; ``score`` (N,): posterior of "upright" in [0, 1]
        (lower = more likely rotated; NaN where not computable); ``suggested`` int (N,):
        degrees counter-clockwise (PIL ``Image.rotate``) that upright a flagged image,
        0 elsewhere.
    """
    post = np.asarray(posterior, dtype=float)
    finite = np.isfinite(post).all(axis=1)
    filled = np.where(finite[:, None], post, 0.0)
    best = filled.argmax(axis=1)
    flag = finite & (best != 0) & (filled.max(axis=1) >= min_posterior)
    score = np.where(finite, filled[:, 0], np.nan)
    suggested = np.where(flag, (360 - 90 * best) % 360, 0).astype(int)
    return flag, score, suggested


# ---------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------
class RotationCheck(Check):
    """Rotation/flip sensitivity of the data (``info``) and images stored rotated.

    Columns: ``is_rotation_issue``, ``rotation_score`` (posterior probability that the
    image is stored upright, see :func:`orientation_posterior`; lower = more likely
    rotated) and ``rotation_suggested``
    (degrees counter-clockwise, as PIL ``Image.rotate(angle, expand=True)``, that bring
    the image upright; 0 where not flagged).

    The check is skipped (``SkipCheck``) without labels, without imgaudit's own fold
    models (user-supplied ``pred_probs``), when the models were trained with right-angle
    rotations, and when the data is rotation-invariant (no right-angle view unsafe: then
    orientation carries no signal to find rotated images with). The dataset-level
    findings are in ``info`` in every case the probe could run.
    """

    name: ClassVar[str] = "rotation"
    requires: ClassVar[tuple[str, ...]] = ("oof",)

    @dataclasses.dataclass
    class Params(Check.Params):
        """Hyperparameters of the rotation probe.

        Parameters
        ----------
        small_angles
            Small rotations probed, each as ``+a`` and ``-a`` degrees.
        safe_retention
            A view is "safe" when it keeps at least this share of the identity view's
            above-chance accuracy (and the interval's low end stays >= ``unsafe_retention``).
        unsafe_retention
            A view is "unsafe" when it keeps less than this share (and the interval's
            high end stays below ``safe_retention``); in between: "unclear".
        z
            Width of the paired interval on the retention, in standard errors.
        min_identity_margin
            Identity accuracy must exceed chance by this much for any verdict but "unclear".
        min_class_count
            Classes with fewer evaluated images get no per-class verdict ("unclear").
        class_wrecked_retention
            A view is "unsafe" whatever its dataset-wide retention when some class's
            retention interval lies wholly below this and the view swaps that class with
            another (:func:`swapped_classes`: a -> b and b -> a, each in at least
            ``min_pair_fraction`` of its class): the view turns one class into another.
            A view whose retention lies between the thresholds and creates no swap is
            "safe": its cost goes one way, from a rendering the model never saw.
        min_pair_count, min_pair_fraction, max_pairs
            Class pairs (``a -> b``) reported per view: seen at least ``min_pair_count``
            times and in at least ``min_pair_fraction`` of class ``a``; at most ``max_pairs``.
        orientation_dims
            PCA dimensions of the view features the orientation head reads
            (:func:`orientation_head_probs`; 128 and 256 measured alike on the benchmark).
        min_class_images
            Fewest training images (other folds) a class needs for its own orientation
            head; smaller classes use the head pooled over all classes.
        class_head_weight
            Weight of the class head's log-likelihood added to the pooled head's
            (:func:`combined_loglik`; 0 = pooled head only).
        symmetry_p
            Level of the test that the heads confuse a class with upright at one angle
            more than at the others (:func:`symmetric_angles`).
        min_posterior
            An image is flagged rotated when its most probable stored orientation is not
            upright and has at least this posterior probability (:func:`orientation_posterior`:
            the prior is the dataset's own estimated share of rotated images, so 0.8
            means "four times likelier rotated than upright, all evidence counted").
        require_sensitive
            Skip the per-image check unless some right-angle rotation is unsafe.
        """

        small_angles: tuple[float, ...] = (10, 30)
        safe_retention: float = 0.9
        unsafe_retention: float = 0.7
        z: float = 2.0
        min_identity_margin: float = 0.1
        min_class_count: int = 20
        class_wrecked_retention: float = 0.3
        min_pair_count: int = 3
        min_pair_fraction: float = 0.1
        max_pairs: int = 20
        orientation_dims: int = 256
        min_class_images: int = 20
        class_head_weight: float = 0.5
        symmetry_p: float = 0.05
        min_posterior: float = 0.8
        require_sensitive: bool = True

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        p = self.params
        if ctx.labels is None:
            raise SkipCheck("no labels: the probe measures accuracy against the given labels")
        oof = ctx.oof
        self.info["mode"] = oof.mode
        self.info["train_transforms"] = list(oof.train_transforms)
        if oof.mode == "user":
            raise SkipCheck(
                "user-supplied pred_probs: there are no fold models to predict rotated views with"
            )
        if not (oof.labels >= 0).any():
            raise SkipCheck("no labeled readable image")
        trained = trained_families(oof.train_transforms)
        if trained:
            warnings.warn(
                f"the fold models were trained with {sorted(trained)} augmentation "
                f"({list(oof.train_transforms)}); the probe cannot judge those views "
                "(verdict 'unclear')",
                stacklevel=2,
            )
        # the identity view is what the fold models already predicted (oof.probs): only
        # the other views need a forward pass
        views = {k: f for k, f in make_views(p.small_angles).items() if k != IDENTITY}
        view_probs = {IDENTITY: oof.probs, **oof.predict_views(views, progress=ctx.config.progress)}
        stats = probe_statistics(view_probs, oof.labels, oof.classes, p, trained)
        self.info.update(stats)

        if "right_angle" in trained:
            raise SkipCheck(
                "the fold models were trained with right-angle rotations: rotated images "
                "look normal to them"
            )
        if p.require_sensitive and not stats["sensitive"]:
            raise SkipCheck(
                "no right-angle rotation is unsafe (verdicts: "
                + ", ".join(f"{v}={stats['verdicts'][v]}" for v in RIGHT_ANGLES if v in stats["verdicts"])
                + "): orientation carries no signal to find rotated images with"
            )
        right_angle_views = make_views(())
        orient = {v: right_angle_views[v] for v in ORIENT_VIEWS}
        try:
            emb = oof.embed_views(orient, progress=ctx.config.progress)
            feats = [emb[v] for v in ORIENT_VIEWS]
            source = "embedded views"
        except NotImplementedError:
            # no backbone to embed with: the fold models' outputs under the views
            feats = orientation_features_from_probs(view_probs)
            source = "fold-model log-probabilities"
        folds = np.where(oof.mask, oof.folds, -1)
        per_class_q, pooled_q = orientation_heads(
            feats, oof.labels, folds, p.min_class_images, p.orientation_dims, ctx.config.seed
        )
        q = class_or_pooled(per_class_q, pooled_q)
        if source == "embedded views":
            loglik = combined_loglik(per_class_q, pooled_q, p.class_head_weight)
        else:
            # the fold models' class probabilities are no class-agnostic feature space: a
            # head pooled over classes reads little orientation from them, so the class
            # heads decide alone
            loglik = orientation_loglik(q)
        prior = rotation_prior(loglik)
        posterior = orientation_posterior(loglik, prior)
        # classes that read the same at an angle: that angle is not claimed for them
        unclaimed = symmetric_angles(stats, oof.classes, p, loglik, oof.labels)
        posterior = drop_angles(posterior, oof.labels, oof.classes, unclaimed)
        flag, score, suggested = find_rotated(posterior, p.min_posterior)
        self.info["orientation"] = orientation_info(q, posterior, flag, oof.labels, oof.classes, prior, source)
        self.info["orientation"]["not_claimed"] = unclaimed
        self.info["n_flagged"] = int(flag.sum())
        self.info["suggested_counts"] = {
            str(a): int(((suggested == a) & flag).sum()) for a in RIGHT_ANGLES.values()
        }
        out = pd.DataFrame(index=ctx.paths)
        out[issue_col(self.name)] = flag
        out[score_col(self.name)] = score
        out[extra_col(self.name, "suggested")] = suggested
        return out
