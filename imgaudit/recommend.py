"""Turn audit findings into a fastai recipe: ``item_tfms``, ``batch_tfms``, warnings.

:func:`recommend` reads the issue table (image sizes, check flags) and the checks' ``info``
(the rotation probe's verdicts) and returns the transforms as data, as code to paste into
a fastai script, the reason behind each choice, and warnings about the data. Every input
is optional: a check that did not run just leaves its choice at fastai's default, with
that said in the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .columns import extra_col, issue_col

logger = logging.getLogger(__name__)

#: fastai's aug_transforms defaults, used where the audit has no evidence either way
FASTAI_DEFAULTS = {"max_rotate": 10.0, "do_flip": True, "flip_vert": False}


@dataclass
class RecommendParams:
    """Thresholds of the recipe choices.

    Parameters
    ----------
    square_aspect
        Aspect ratio (long/short side) up to which an image counts as near-square.
    uniform_aspect_spread
        When the 5th..95th percentile aspect ratios differ by at most this factor, every
        image is distorted alike by squishing, so nothing is cropped away.
    elongated_aspect
        Images with a larger aspect ratio lose over a third of their area to a centre crop.
    elongated_share
        Share of elongated images above which the recipe pads instead of cropping.
    presize_factor
        fastai's presizing: ``Resize`` on the CPU to up to this multiple of the training
        size, then augment and shrink on the GPU (less interpolation damage).
    small_share
        Warn when more than this share of images is smaller than the training size.
    imbalance_ratio
        Warn when the largest class has more than this many times the smallest's images.
    min_class_images
        Warn about classes with fewer images.
    """

    square_aspect: float = 1.15
    uniform_aspect_spread: float = 1.05
    elongated_aspect: float = 1.5
    elongated_share: float = 0.1
    presize_factor: float = 2.0
    small_share: float = 0.1
    imbalance_ratio: float = 5.0
    min_class_images: int = 10


def _config_size(config: Any) -> int:
    if config is None:
        return 224
    size = config.get("size") if isinstance(config, Mapping) else getattr(config, "size", None)
    return int(size) if size else 224


def _sizes(issues: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    if "width" not in issues or "height" not in issues:
        return None
    w = pd.to_numeric(issues["width"], errors="coerce").to_numpy(dtype=float)
    h = pd.to_numeric(issues["height"], errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(w) & np.isfinite(h) & (w > 0) & (h > 0)
    if not ok.any():
        return None
    return w[ok], h[ok]


def _count(issues: pd.DataFrame, check: str) -> int | None:
    col = issue_col(check)
    if col not in issues:
        return None
    return int(issues[col].fillna(False).astype(bool).sum())


def _pct(n: int, total: int) -> str:
    return f"{n} ({n / max(total, 1):.1%})"


def _resize_choice(issues: pd.DataFrame, size: int, p: RecommendParams) -> tuple[dict[str, Any], str]:
    """``Resize`` kwargs and the reason, from the images' sizes and aspect ratios."""
    sizes = _sizes(issues)
    if sizes is None:
        return {"size": size, "method": "crop"}, (
            "no image sizes known (decode pass did not run): fastai's default centre/random crop"
        )
    w, h = sizes
    short = np.minimum(w, h)
    ar = np.maximum(w, h) / short
    n = ar.size
    p5, p50, p95 = np.percentile(ar, [5, 50, 95])
    med_short = float(np.median(short))
    # Presize (fastai's trick) only when the images are big enough to give the GPU
    # augmentations something to crop from; upsampling small images twice gains nothing.
    item_size = int(min(p.presize_factor * size, med_short)) if med_short > size else size
    item_size = max(item_size, size)
    elongated = float((ar > p.elongated_aspect).mean())
    if p95 <= p.square_aspect:
        method = "squish"
        why = (
            f"95% of images are near-square (aspect <= {p95:.2f}:1): squish keeps every pixel "
            f"and distorts by at most {p95 - 1:.0%}"
        )
    elif p95 / p5 <= p.uniform_aspect_spread:
        method = "squish"
        why = (
            f"all images share one aspect ratio (~{p50:.2f}:1): squish distorts them all alike "
            "and crops nothing away"
        )
    elif elongated > p.elongated_share:
        method = "pad"
        why = (
            f"{elongated:.0%} of images are elongated (aspect > {p.elongated_aspect}:1): a "
            "square crop would cut away over a third of them and squish would distort them, "
            "so pad to square"
        )
    else:
        method = "crop"
        why = (
            f"aspect ratios vary (median {p50:.2f}:1, 95th pct {p95:.2f}:1) but few images are "
            "elongated: crop (random crop in training, centre crop in validation)"
        )
    kwargs: dict[str, Any] = {"size": item_size, "method": method}
    if method == "pad":
        kwargs["pad_mode"] = "zeros"
    if item_size > size:
        why += f"; presized to {item_size} px (median short side {med_short:.0f} px) for the GPU augmentations"
    else:
        why += f"; {n} images, median short side {med_short:.0f} px"
    return kwargs, why


def _rotation_info(info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    rot = info.get("rotation") if isinstance(info, Mapping) else None
    if not isinstance(rot, Mapping) or not isinstance(rot.get("verdicts"), Mapping):
        return None
    return rot


def _aug_choice(info: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """aug_transforms kwargs (max_rotate, do_flip, flip_vert) and a reason for each."""
    rot = _rotation_info(info)
    if rot is None:
        why = "no rotation probe ran (needs labels and imgaudit's own fold models): fastai's default"
        return dict(FASTAI_DEFAULTS), {k: why for k in FASTAI_DEFAULTS}
    v: Mapping[str, str] = rot["verdicts"]

    def says(view: str) -> str:
        return f"{view} {v.get(view, 'not probed')}"

    kwargs: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    # horizontal flip
    fh = v.get("flip_h")
    if fh is None:
        kwargs["do_flip"], reasons["do_flip"] = True, "flip_h not probed: fastai's default"
    else:
        kwargs["do_flip"] = fh == "safe"
        reasons["do_flip"] = (
            f"probe: {says('flip_h')}: mirrored images keep their labels"
            if fh == "safe"
            else f"probe: {says('flip_h')}: the model reads left/right, do not mirror"
        )
    # vertical flips: fastai implements flip_vert=True as Dihedral (all 8 right-angle
    # rotations and flips), so it needs every one of them to be safe.
    dihedral = ["rot90", "rot180", "rot270", "flip_v"]
    bad = [d for d in dihedral if v.get(d) != "safe"]
    kwargs["flip_vert"] = not bad and kwargs["do_flip"]
    if kwargs["flip_vert"]:
        reasons["flip_vert"] = (
            "probe: rot90, rot180, rot270 and flip_v all safe: the data has no up; flip_vert=True "
            "applies all 8 dihedral views"
        )
    else:
        reasons["flip_vert"] = (
            "probe: " + ", ".join(says(d) for d in bad)
            + (": orientation matters" if any(v.get(d) == "unsafe" for d in bad) else ": not shown safe")
            + " (flip_vert=True would apply every right-angle rotation and flip)"
        )
    # small rotations: the largest probed angle whose +/- views are both safe
    small: dict[float, list[str]] = {}
    for name, st in (rot.get("views") or {}).items():
        if isinstance(st, Mapping) and st.get("family") == "small_rotation" and st.get("angle") is not None:
            small.setdefault(abs(float(st["angle"])), []).append(v.get(name, "unclear"))
    safe_angles = sorted(a for a, vs in small.items() if vs and all(x == "safe" for x in vs))
    if not small:
        kwargs["max_rotate"] = FASTAI_DEFAULTS["max_rotate"]
        reasons["max_rotate"] = "small rotations not probed: fastai's default"
    elif safe_angles:
        a = safe_angles[-1]
        if kwargs["flip_vert"] and a >= 30:
            # with the dihedral flips, +-45 degrees reaches every angle; +-30 was shown safe
            # and the right angles too, so the gap between them is interpolation, not a guess
            kwargs["max_rotate"] = 45.0
            reasons["max_rotate"] = (
                f"probe: rotations by +-{a:g} and all right angles safe: any angle is; "
                "45 plus the dihedral flips covers them all"
            )
        else:
            kwargs["max_rotate"] = float(a)
            unsafe = sorted(x for x in small if x > a)
            reasons["max_rotate"] = f"probe: rotations by +-{a:g} degrees safe" + (
                f", larger ones ({', '.join(f'+-{x:g}' for x in unsafe)}) not" if unsafe else ""
            )
    else:
        kwargs["max_rotate"] = 0.0
        reasons["max_rotate"] = "probe: " + ", ".join(
            f"+-{a:g} {'/'.join(sorted(set(vs)))}" for a, vs in sorted(small.items())
        ) + ": even small rotations are not shown safe"
    return kwargs, reasons


def _warnings(issues: pd.DataFrame, info: Mapping[str, Any], size: int, p: RecommendParams) -> list[str]:
    out: list[str] = []
    total = len(issues)
    n = _count(issues, "unreadable")
    if n:
        out.append(
            f"{_pct(n, total)} files are unreadable: fastai will fail on them; drop them "
            "(result.get_issues('unreadable'))"
        )
    sizes = _sizes(issues)
    if sizes is not None:
        short = np.minimum(*sizes)
        small = int((short < size).sum())
        if small > p.small_share * short.size:
            out.append(
                f"{_pct(small, short.size)} images are smaller than the input size {size} px "
                f"(median short side {np.median(short):.0f} px): they get upsampled; consider "
                f"a smaller size or accept blurrier inputs"
            )
    if "label" in issues:
        counts = issues["label"].dropna().astype(str).value_counts()
        if len(counts) >= 2:
            big, little = counts.index[0], counts.index[-1]
            ratio = counts.iloc[0] / max(counts.iloc[-1], 1)
            if ratio > p.imbalance_ratio:
                out.append(
                    f"classes are imbalanced: '{big}' has {counts.iloc[0]} images, '{little}' "
                    f"{counts.iloc[-1]} ({ratio:.1f}x): consider a weighted loss or oversampling, "
                    "and per-class metrics"
                )
            few = counts[counts < p.min_class_images]
            if len(few):
                out.append(
                    f"{len(few)} class(es) have fewer than {p.min_class_images} images "
                    f"({', '.join(map(str, few.index[:5]))}{'...' if len(few) > 5 else ''})"
                )
    # the near-duplicate check writes split leaks as their own issue type
    leaks = _count(issues, "split_leak")
    if leaks:
        out.append(
            f"{leaks} images in validation/test duplicate a training image (split leak): "
            "validation accuracy will be too optimistic; remove or move them"
        )
    for check, what in (("exact_duplicates", "are exact duplicates"), ("near_duplicates", "are near duplicates")):
        n = _count(issues, check)
        if n:
            out.append(f"{_pct(n, total)} images {what} of another: they weigh twice in training")
    n = _count(issues, "label")
    if n:
        out.append(
            f"{_pct(n, total)} images look mislabeled: review them (result.to_fiftyone()) or "
            "write a cleaned label file (result.clean_labels())"
        )
    n = _count(issues, "rotation")
    if n:
        out.append(
            f"{_pct(n, total)} images look rotated (column {extra_col('rotation', 'suggested')}: "
            "degrees counter-clockwise that upright them)"
        )
    rot = _rotation_info(info)
    if rot is not None:
        for view, pairs in (rot.get("pairs") or {}).items():
            if rot["verdicts"].get(view) == "unsafe" and pairs:
                top = pairs[0]
                out.append(
                    f"{view} turns '{top['from']}' into '{top['to']}' ({top['count']} images): "
                    f"never augment with {view}"
                )
                break
    return out


def _render(item: dict[str, Any], aug: dict[str, Any]) -> list[str]:
    def fmt(v: Any) -> str:
        return repr(v) if not isinstance(v, str) else f'"{v}"'

    extra = "".join(f", {k}={fmt(v)}" for k, v in item.items() if k not in ("size",))
    return [
        f"item_tfms = Resize({item['size']}{extra})",
        "batch_tfms = aug_transforms(",
        *(f"    {k}={fmt(v)}," for k, v in aug.items()),
        ")",
    ]


def recommend(
    issues: pd.DataFrame, info: Mapping[str, Any] | None, config: Any = None,
    params: RecommendParams | None = None,
) -> dict[str, Any]:
    """The fastai recipe the audit's findings support.

    Parameters
    ----------
    issues
        The audit's issue table (any subset of its columns: ``width``/``height``,
        ``label``, check flags).
    info
        The audit's ``info`` (``info["rotation"]`` from the rotation probe, duplicate
        info); may be empty.
    config
        :class:`~imgaudit.config.AuditConfig` or its dict (``size`` is read); None: 224.
    params
        Thresholds (:class:`RecommendParams`).

    Returns
    -------
    dict
        ``item_tfms`` and ``batch_tfms`` (lists of ``{"name", "kwargs"}``), ``code`` (the
        two assignments, to paste after ``from fastai.vision.all import *``), ``reasons``
        (one per line of ``code`` that carries a choice, prefixed by that line),
        ``warnings`` (list of str).

    Example
    -------
    >>> rec = recommend(result.issues, result.info, result.config)   # doctest: +SKIP
    >>> print(rec["code"])                                           # doctest: +SKIP
    item_tfms = Resize(224, method="squish")
    batch_tfms = aug_transforms(
        size=224,
        max_rotate=0.0,
        do_flip=True,
        flip_vert=False,
    )
    """
    p = params or RecommendParams()
    info = info or {}
    size = _config_size(config)
    item, item_why = _resize_choice(issues, size, p)
    aug_kwargs, aug_why = _aug_choice(info)
    aug = {"size": size, **{k: aug_kwargs[k] for k in ("max_rotate", "do_flip", "flip_vert")}}
    lines = _render(item, aug)
    reasons = [f"{lines[0].strip()}: {item_why}"]
    reasons.append(f"size={size}: the training input size (audit option size)")
    for k in ("max_rotate", "do_flip", "flip_vert"):
        reasons.append(f"{k}={aug[k]!r}: {aug_why[k]}")
    return {
        "item_tfms": [{"name": "Resize", "kwargs": item}],
        "batch_tfms": [{"name": "aug_transforms", "kwargs": aug}],
        "code": "\n".join(lines),
        "reasons": reasons,
        "warnings": _warnings(issues, info, size, p),
    }
