"""Image-property checks: readers of the one decode pass (:mod:`imgaudit.decode`).

Every check here reads ``ctx.records`` only, so they cost nothing beyond the shared
decode pass. Scores follow the contract (float in [0, 1], lower = worse). Unless a
check says otherwise its score is a *ratio to twice the threshold*, clipped to
[0, 1]: an image exactly at the threshold scores 0.5, so ``score < 0.5`` and the
issue flag agree.

Unreadable images (``records.ok`` False) have no pixels to judge: every check but
``unreadable`` reports them as not an issue with score 1.0 ("not applicable"),
so that one broken file is counted once, under ``unreadable``.

The non-tabular property summary (resolution histograms overall and per class,
class counts, imbalance) is built by :func:`properties_info`; the
``low_resolution`` check stores it in its own ``info`` (so ``result.info`` carries
it under ``"low_resolution"``), and the orchestrator may also call it directly to
fill ``result.info["properties"]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ..columns import extra_col, issue_col, score_col
from .base import Check, clip01

if TYPE_CHECKING:
    from ..context import AuditContext

#: short-side histogram bin edges (pixels); the last bin is open-ended
SHORT_SIDE_BINS: tuple[int, ...] = (0, 32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 512, 768, 1024, 2048)


def _ok(records: pd.DataFrame) -> np.ndarray:
    return records["ok"].to_numpy(dtype=bool)


def _frame(
    ctx: AuditContext, name: str, issue: np.ndarray, score: np.ndarray, ok: np.ndarray
) -> pd.DataFrame:
    """Assemble the two contract columns; unreadable rows -> (False, 1.0)."""
    issue = np.where(ok, issue, False).astype(bool)
    score = np.where(ok, np.nan_to_num(clip01(score), nan=1.0), 1.0)
    return pd.DataFrame({issue_col(name): issue, score_col(name): score}, index=ctx.paths)


def _ratio_score(value: np.ndarray, threshold: float) -> np.ndarray:
    """``value / (2 * threshold)`` clipped to [0, 1]: 0.5 exactly at the threshold."""
    return clip01(np.asarray(value, dtype=float) / (2.0 * threshold))


class Unreadable(Check):
    """Files that could not be decoded: corrupt, truncated, zero-byte, not an image,
    decompression bomb, missing, symlink loop, path outside the root...

    Score 0.0 for unreadable files, 1.0 otherwise. Extra ``unreadable_reason``: why
    (``None`` for readable files).
    """

    name: ClassVar[str] = "unreadable"

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        ok = _ok(rec)
        df = pd.DataFrame(
            {
                issue_col(self.name): ~ok,
                score_col(self.name): ok.astype(float),
                extra_col(self.name, "reason"): rec["error"].where(~rec["ok"], None),
            },
            index=ctx.paths,
        )
        reasons = rec.loc[~ok, "error"].astype(str)
        # group reasons by their leading phrase so the summary stays short
        kinds = reasons.str.split(":", n=1).str[0].value_counts()
        self.info = {"num_unreadable": int((~ok).sum()), "reasons": {str(k): int(v) for k, v in kinds.items()}}
        return df


class LowResolution(Check):
    """Short side (as displayed) below the size the model trains at: these images
    get upsampled by ``Resize(size)``.

    Score ``min(1, short_side / (ratio * size))``. ``info`` holds the property
    summary of :func:`properties_info` (resolution histograms, class counts).
    """

    name: ClassVar[str] = "low_resolution"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        ratio
            Flag images whose short side is below ``ratio * config.size``
            (1.0: anything that will be upsampled).
        """

        ratio: float = 1.0

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        ok = _ok(rec)
        target = self.params.ratio * ctx.config.size
        short = np.minimum(rec["width"].to_numpy(float), rec["height"].to_numpy(float))
        issue = short < target
        score = short / target
        self.info = properties_info(rec, ctx.labels, ctx.config.size)
        self.info["target_short_side"] = float(target)
        return _frame(ctx, self.name, issue, score, ok)


class OddAspectRatio(Check):
    """A square centre crop (fastai's default ``Resize``) would cut away a large
    share of the image.

    The share cut is ``1 - short / long``; score ``short / long`` (the share kept).
    """

    name: ClassVar[str] = "odd_aspect_ratio"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        max_cut
            Flag images that lose more than this share to a square centre crop
            (0.5: wider or taller than 2:1).
        """

        max_cut: float = 0.5

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        ok = _ok(rec)
        w, h = rec["width"].to_numpy(float), rec["height"].to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            kept = np.minimum(w, h) / np.maximum(w, h)
        issue = (1.0 - kept) > self.params.max_cut
        return _frame(ctx, self.name, issue, kept, ok)


def _robust_z(x: np.ndarray, min_sigma: float) -> tuple[np.ndarray, float, float]:
    """``((x - median) / sigma, median, sigma)``, sigma = max(1.4826 x MAD, ``min_sigma``):
    a z-score that the outliers it looks for do not move."""
    med = float(np.median(x))
    sigma = max(1.4826 * float(np.median(np.abs(x - med))), min_sigma)
    return (x - med) / sigma, med, sigma


class OddSize(Check):
    """Area far outside the dataset's own size distribution.

    Robust z-score of log(area): ``z = (log a - median) / max(1.4826 * MAD,
    min_sigma)``. Score ``0.5 ** ((z / z_threshold) ** 2)`` (0.5 at the threshold).
    Extra ``odd_size_zscore`` (signed: negative = smaller than usual).
    """

    name: ClassVar[str] = "odd_size"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        z_threshold
            Flag images with ``|z| > z_threshold``.
        min_sigma
            Floor on the robust spread of log(area), so that a dataset of
            identically sized images does not flag a 1-pixel difference
            (0.25: with identical sizes, an area ratio above e = 2.7x is flagged).
        """

        z_threshold: float = 4.0
        min_sigma: float = 0.25

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        ok = _ok(rec)
        area = rec["width"].to_numpy(float) * rec["height"].to_numpy(float)
        z = np.zeros(len(rec))
        if ok.any():
            la = np.log(np.maximum(area[ok], 1.0))
            z[ok], med, sigma = _robust_z(la, self.params.min_sigma)
            self.info = {"median_area": float(math.exp(med)), "log_area_sigma": sigma}
        issue = np.abs(z) > self.params.z_threshold
        score = np.power(0.5, (z / self.params.z_threshold) ** 2)
        df = _frame(ctx, self.name, issue, score, ok)
        df[extra_col(self.name, "zscore")] = np.where(ok, z, np.nan)
        return df


class Grayscale(Check):
    """Judged from the pixels: RGB files whose three channels are (nearly) equal count.

    Statistic: 99th percentile over pixels of ``(max(R,G,B) - min(R,G,B)) / 255``
    (``chroma_p99``), at the decode pass's statistics scale. Tolerates the small
    channel differences JPEG compression leaves in gray content.

    A grey image is a problem in a colour dataset (the model sees a different input
    distribution). When most of the dataset is grey (digits, X-rays, Fashion-MNIST),
    grey is the norm: nothing is flagged and ``info["grayscale_dataset"]`` says so.
    """

    name: ClassVar[str] = "grayscale"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        max_chroma
            Flag images whose ``chroma_p99`` is at most this (0.04 ~ 10 grey levels).
        max_share
            When more than this share of the readable images is grey, the dataset is
            grey by nature and no image is flagged.
        """

        max_chroma: float = 0.04
        max_share: float = 0.5

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        chroma = rec["chroma_p99"].to_numpy(float)
        issue = chroma <= self.params.max_chroma
        ok = _ok(rec)
        share = float(issue[ok].mean()) if ok.any() else 0.0
        self.info = {"grayscale_share": share, "grayscale_dataset": share > self.params.max_share}
        if share > self.params.max_share:
            # a grey dataset: grey is the norm, not an issue (scores still rank colourfulness)
            issue = np.zeros_like(issue)
        return _frame(ctx, self.name, issue, _ratio_score(chroma, self.params.max_chroma), ok)


class Dark(Check):
    """Too dark: even the brightest 1% of pixels are dim.

    Statistic: 99th percentile of luminance / 255 (``brightness_p99``).
    """

    name: ClassVar[str] = "dark"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        threshold
            Flag images whose ``brightness_p99`` is below this.
        """

        threshold: float = 0.25

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        b = rec["brightness_p99"].to_numpy(float)
        issue = b < self.params.threshold
        return _frame(ctx, self.name, issue, _ratio_score(b, self.params.threshold), _ok(rec))


class Light(Check):
    """Washed out / overexposed: even the darkest 5% of pixels are bright.

    Statistic: ``darkness = 1 - brightness_p05`` (5th percentile of luminance / 255).
    """

    name: ClassVar[str] = "light"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        threshold
            Flag images whose ``1 - brightness_p05`` is below this (0.15: the
            darkest 5% of pixels are brighter than 85% white).
        """

        threshold: float = 0.15

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        d = 1.0 - rec["brightness_p05"].to_numpy(float)
        issue = d < self.params.threshold
        return _frame(ctx, self.name, issue, _ratio_score(d, self.params.threshold), _ok(rec))


class Blurry(Check):
    """Blurrier than its peers, or too blurry to be of use.

    Statistic ``sharpness``: standard deviation of the 4-neighbour Laplacian divided
    by the standard deviation of the grey image, at the decode pass's statistics
    scale (short side 64 px, never upsampled: ``imgaudit.decode.STAT_SIDE``).
    Dividing by contrast keeps a dim but sharp image from looking blurry. Near-constant
    images (grey std below ``min_contrast``) have nothing to be sharp about: not
    applicable (score 1.0); ``low_information`` flags them.

    Two rules; an image is flagged by either:

    - **hopeless** (absolute floor): ``sharpness < threshold``. Below 0.1 the image
      has next to no edge at 64 px (roughly a Gaussian blur of sigma 2 px at that scale,
      ~30 px on a 1000 px photo): whatever its peers look like, there is little left
      to learn from it.
    - **blurrier than its peers** (relative): its log-sharpness lies more than ``z``
      robust standard deviations (1.4826 x the median absolute deviation) below the
      median of its class, *and* its sharpness is below ``max_ratio`` x that median.
      How sharp an image "should" be depends on the data: upscaled 8x8 digit scans
      are all equally soft (~0.3 at 64 px) and sharp photos score 0.6-1.0, so a
      single absolute threshold either flags a whole soft dataset (the former 0.35
      flagged 159 of the 404 demo digits) or misses a photo blurred to what is
      normal for digits. What a user wants found is the image that is blurrier than
      the images it will be trained with. Log scale, because blur scales sharpness
      by a factor; median and MAD, so the blurred images themselves do not move the
      reference; the ratio, so a dataset of near-identical images does not flag
      trivial differences. Peers are the image's class when it has at least
      ``min_peers`` applicable images, otherwise the whole dataset (unlabeled data,
      small classes); a class that is blurry throughout is judged against itself,
      and only the floor catches it (``info["peer_median"]`` shows each peer group's median).

    Extra column ``blurry_zscore``: the robust z-score of log-sharpness among the
    peers (NaN where not applicable). ``info`` holds the peer medians and how many
    images each rule flagged.

    The defaults (``z`` 2.5, ``max_ratio`` 0.5, ``threshold`` 0.1) were chosen with
    ``benchmarks/properties.py`` and the demo dataset: with 10% of 200 sharp photos
    replaced by copies blurred at full size (sigma 8 / 12 px) the rule flags about
    half / nine in ten of the copies and none of the sharp photos (the former absolute
    0.35 flagged 38% / 86% of such copies), and on the demo's 404 soft digits it flags
    the planted blurred one only. A photo below half the median sharpness of its peers
    and 2.5 robust SD under it is softer than nearly all of them.
    """

    name: ClassVar[str] = "blurry"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        threshold
            Absolute floor: flag images whose ``sharpness`` is below this whatever
            their peers. At the 64 px statistics scale sharp ~1000 px photos score
            0.6-1.0, Gaussian blur sigma 8 / 12 px at full size brings them to
            ~0.40 / ~0.26, upscaled 8x8 digits score 0.25-0.45. Before the relative
            rule this was the only rule, at 0.35; ``threshold=0.35,
            relative=False`` restores that behaviour.
        relative
            Also flag images blurrier than their peers (see the class docstring).
        z
            Robust z-score of log-sharpness below the peer median needed to flag.
        max_ratio
            ... and the sharpness must be below this fraction of the peer median.
        min_peers
            Fewest applicable images a class needs to be its images' peers; smaller
            classes and unlabeled images are compared with the whole dataset, and the
            relative rule is off when the dataset has fewer than this many.
        min_contrast
            Grey-level standard deviation (0-1 scale) below which the check does
            not apply.
        """

        threshold: float = 0.1
        relative: bool = True
        z: float = 2.5
        max_ratio: float = 0.5
        min_peers: int = 20
        min_contrast: float = 0.02

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        p = self.params
        rec = ctx.records
        ok = _ok(rec)
        s = rec["sharpness"].to_numpy(float)
        applies = ok & (rec["gray_std"].to_numpy(float) >= p.min_contrast) & np.isfinite(s)
        hopeless = applies & (s < p.threshold)
        score = np.where(applies, _ratio_score(s, p.threshold), 1.0)
        zscore = np.full(len(s), np.nan)
        relative = np.zeros(len(s), dtype=bool)
        medians: dict[str, float] = {}
        if p.relative and applies.sum() >= p.min_peers:
            logs = np.log(np.maximum(s, 1e-6))
            labels = ctx.labels
            groups = (
                labels.reindex(ctx.paths).astype("string").fillna("").to_numpy(dtype=object)
                if labels is not None
                else np.full(len(s), "", dtype=object)
            )
            big = {g for g in set(groups[applies]) if g != "" and (applies & (groups == g)).sum() >= p.min_peers}
            peer = np.where(np.isin(groups, list(big)), groups, "")
            for g in set(peer[applies]):
                m = applies & (peer == g)
                # a floor on the spread: identical images must not turn noise into z-scores
                zscore[m], med, _ = _robust_z(logs[m], 1e-3)
                medians[g or "(all)"] = float(np.exp(med))
                # severity >= 1 when both conditions hold; 0.5 at the boundary, as elsewhere
                sev = np.minimum(-zscore[m] / p.z, (logs[m] - med) / math.log(p.max_ratio))
                relative[m] = sev > 1.0
                score[m] = np.minimum(score[m], clip01(1.0 - sev / 2.0))
        issue = hopeless | relative
        self.info.update(
            n_hopeless=int(hopeless.sum()),
            n_relative=int((relative & ~hopeless).sum()),
            peer_median=medians,
            rule=f"sharpness < {p.threshold}" + (
                f", or log-sharpness more than {p.z} robust SD below its peers' median and "
                f"below {p.max_ratio} x that median (peers: class with >= {p.min_peers} images, "
                "else the dataset)"
                if p.relative
                else ""
            ),
        )
        out = _frame(ctx, self.name, issue, score, ok)
        out[extra_col(self.name, "zscore")] = zscore
        return out


class LowInformation(Check):
    """Blank or nearly blank images: low entropy of the grey-level histogram.

    Statistic ``entropy``: Shannon entropy (bits) of the 256-bin grey histogram / 8,
    in [0, 1].
    """

    name: ClassVar[str] = "low_information"

    @dataclasses.dataclass
    class Params(Check.Params):
        """
        Parameters
        ----------
        threshold
            Flag images whose normalised entropy is below this (0.15: 1.2 bits,
            e.g. a blank or two-tone image; photos score 0.6-0.97, a logo on a
            plain background ~0.2).
        """

        threshold: float = 0.15

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        rec = ctx.records
        e = rec["entropy"].to_numpy(float)
        issue = e < self.params.threshold
        return _frame(ctx, self.name, issue, _ratio_score(e, self.params.threshold), _ok(rec))


PROPERTY_CHECKS: list[type[Check]] = [
    Unreadable,
    LowResolution,
    OddAspectRatio,
    OddSize,
    Grayscale,
    Dark,
    Light,
    Blurry,
    LowInformation,
]


# -- the non-tabular property summary ---------------------------------------------------


def _histogram(short: np.ndarray) -> dict[str, Any]:
    edges = np.asarray(SHORT_SIDE_BINS + (np.inf,), dtype=float)
    counts, _ = np.histogram(short, bins=edges)
    labels = [
        f"{int(lo)}-{int(hi) - 1}" if np.isfinite(hi) else f">={int(lo)}"
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    ]
    return {"bins": labels, "edges": [int(e) for e in SHORT_SIDE_BINS], "counts": [int(c) for c in counts]}


def _describe(x: np.ndarray) -> dict[str, float | None]:
    if len(x) == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(x.min()), "median": float(np.median(x)), "max": float(x.max())}


def properties_info(records: pd.DataFrame, labels: pd.Series | None, size: int) -> dict[str, Any]:
    """Resolution histograms (overall and per class), class counts and imbalance.

    Parameters
    ----------
    records
        ``DecodeOutput.records`` (uses ``ok``, ``width``, ``height``).
    labels
        Per-image labels aligned with ``records`` (``None``: unlabeled data).
    size
        The training size (short side) the histograms are read against.

    Returns
    -------
    dict
        JSON-serialisable: ``target_size``, ``num_images``, ``num_readable``,
        ``short_side`` (overall histogram: ``bins``, ``edges``, ``counts``),
        ``below_target`` (count and share of readable images whose short side is
        below ``size``), ``width``/``height``/``short_side_stats`` (min, median, max),
        ``per_class`` ({class: {count, readable, short_side, below_target}}),
        ``class_counts``, ``imbalance_ratio`` (largest class / smallest class) and
        ``unlabeled`` (images without a label).

    Examples
    --------
    >>> info = properties_info(ctx.records, ctx.labels, 224)  # doctest: +SKIP
    >>> info["short_side"]["counts"]  # doctest: +SKIP
    """
    ok = _ok(records)
    w = records["width"].to_numpy(float)
    h = records["height"].to_numpy(float)
    short = np.minimum(w, h)
    out: dict[str, Any] = {
        "target_size": int(size),
        "num_images": int(len(records)),
        "num_readable": int(ok.sum()),
        "short_side": _histogram(short[ok]),
        "below_target": {
            "count": int((short[ok] < size).sum()),
            "share": float((short[ok] < size).mean()) if ok.any() else 0.0,
        },
        "width_stats": _describe(w[ok]),
        "height_stats": _describe(h[ok]),
        "short_side_stats": _describe(short[ok]),
    }
    if labels is None:
        out.update(per_class={}, class_counts={}, imbalance_ratio=None, unlabeled=int(len(records)))
        return out
    lab = labels.reindex(records.index)
    has = lab.notna().to_numpy()
    lab_str = lab.astype(str).to_numpy()
    per_class: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for cls in sorted(set(lab_str[has])):
        m = (lab_str == cls) & has
        mo = m & ok
        counts[cls] = int(m.sum())
        per_class[cls] = {
            "count": int(m.sum()),
            "readable": int(mo.sum()),
            "short_side": _histogram(short[mo]),
            "short_side_stats": _describe(short[mo]),
            "below_target": int((short[mo] < size).sum()),
        }
    nonzero = [c for c in counts.values() if c > 0]
    out.update(
        per_class=per_class,
        class_counts=counts,
        imbalance_ratio=(max(nonzero) / min(nonzero)) if nonzero else None,
        unlabeled=int((~has).sum()),
    )
    return out
