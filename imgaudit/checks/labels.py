"""Label issues (cleanlab on out-of-fold predictions) and outliers (from embeddings).

Both checks read ``ctx.oof`` (:func:`imgaudit.training.compute_oof`): the ``label``
check its out-of-fold probabilities, the ``outlier`` check its embeddings.

Rows without an out-of-fold prediction (unlabeled or unreadable images) are not
judged: ``is_label_issue`` False and ``label_score`` NaN ("not applicable"), so a
broken file is counted once, under ``unreadable``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ..columns import extra_col, issue_col, score_col
from .base import Check, SkipCheck, clip01

if TYPE_CHECKING:
    from ..context import AuditContext

#: the confusion matrix goes into ``info`` only up to this many classes (K x K entries)
MAX_CLASSES_FOR_JOINT = 50


class LabelCheck(Check):
    """Images whose given label disagrees with what the out-of-fold models learned.

    ``is_label_issue`` comes from :func:`cleanlab.filter.find_label_issues` and
    ``label_score`` from :func:`cleanlab.rank.get_label_quality_scores` (lower =
    more likely mislabeled). Extras: ``label_suggested`` (the most probable class)
    and ``label_confidence`` (its out-of-fold probability).

    ``info``: ``per_class`` label quality (cleanlab's
    ``rank_classes_by_label_quality``), ``confused_pairs`` (the most overlapping
    class pairs, ``find_overlapping_classes``), ``noise_rate`` (estimated share of
    wrong labels, ``1 - overall_label_health_score``), ``n_issues``, the
    ``confident_joint`` (up to 50 classes), and the training ``mode``.
    """

    name: ClassVar[str] = "label"
    requires: ClassVar[tuple[str, ...]] = ("oof",)

    @dataclasses.dataclass
    class Params(Check.Params):
        """Hyperparameters of the label check.

        Parameters
        ----------
        filter_by
            cleanlab ``find_label_issues`` method ("prune_by_noise_rate",
            "prune_by_class", "both", "confident_learning", "predicted_neq_given",
            "low_normalized_margin", "low_self_confidence"). "both" (an image must
            be flagged by the per-class and the per-noise-rate rules) is more
            precise than cleanlab's default "prune_by_noise_rate" at a small cost
            in recall: +0.01..0.02 F1 in every fast-mode setting we measured on
            Fashion-MNIST with 10% flipped labels (``benchmarks/labels.py``).
        score_method
            cleanlab ``get_label_quality_scores`` method ("self_confidence",
            "normalized_margin", "confidence_weighted_entropy"). "normalized_margin"
            (given-label probability minus the best other class's) ranks flips better
            than "self_confidence": label-score AUROC 0.978 vs 0.973 for fast mode's
            probabilities on ``benchmarks/labels.py``; "confidence_weighted_entropy"
            was worst (0.953).
        n_confused_pairs
            How many of the most overlapping class pairs go into ``info``.
        """

        filter_by: str = "both"
        score_method: str = "normalized_margin"
        n_confused_pairs: int = 10

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        from cleanlab.dataset import (
            find_overlapping_classes,
            overall_label_health_score,
            rank_classes_by_label_quality,
        )
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        if ctx.labels is None:
            raise SkipCheck("the images have no labels")
        oof = ctx.oof
        classes = list(oof.classes)
        mask = oof.mask
        labels = oof.labels[mask]
        if len(np.unique(labels)) < 2:
            raise SkipCheck("fewer than 2 classes among the readable labeled images")
        oof_probs = oof.probs[mask]
        probs = np.clip(oof_probs, 0.0, 1.0)
        probs = probs / probs.sum(axis=1, keepdims=True)
        p = self.params

        with warnings.catch_warnings():
            # cleanlab warns about rare classes; audits expect them
            warnings.simplefilter("ignore", UserWarning)
            is_issue = find_label_issues(labels, probs, filter_by=p.filter_by)
            scores = get_label_quality_scores(labels, probs, method=p.score_method)
            per_class = rank_classes_by_label_quality(labels=labels, pred_probs=probs)
            overlap = find_overlapping_classes(labels=labels, pred_probs=probs)
            health = float(overall_label_health_score(labels, probs, verbose=False))

        n = len(ctx.paths)
        issue = np.zeros(n, dtype=bool)
        issue[mask] = is_issue
        score = np.full(n, np.nan)
        score[mask] = clip01(scores)
        best = np.argmax(np.nan_to_num(oof_probs, nan=-1.0), axis=1)
        suggested = np.full(n, None, dtype=object)
        suggested[mask] = [classes[i] for i in best]
        confidence = np.full(n, np.nan)
        confidence[mask] = oof_probs[np.arange(len(best)), best]

        self.info = {
            "mode": oof.mode,
            "n_scored": int(mask.sum()),
            "n_issues": int(is_issue.sum()),
            "noise_rate": 1.0 - health,
            "filter_by": p.filter_by,
            "score_method": p.score_method,
            "per_class": _per_class(per_class, classes),
            "confused_pairs": _pairs(overlap, classes, p.n_confused_pairs),
        }
        if len(classes) <= MAX_CLASSES_FOR_JOINT:
            from cleanlab.count import compute_confident_joint

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                cj = compute_confident_joint(labels, probs)
            self.info["confident_joint"] = {
                "classes": classes[: cj.shape[0]],
                "counts": np.asarray(cj, dtype=int).tolist(),  # rows: given label, cols: true
            }
        return pd.DataFrame(
            {
                issue_col(self.name): issue,
                score_col(self.name): score,
                extra_col(self.name, "suggested"): suggested,
                extra_col(self.name, "confidence"): confidence,
            },
            index=ctx.paths,
        )


def _per_class(df: pd.DataFrame, classes: list[str]) -> list[dict[str, Any]]:
    out = []
    for _, row in df.iterrows():
        ci = int(row["Class Index"])
        out.append(
            {
                "class": classes[ci],
                "label_issues": int(row["Label Issues"]),
                "inverse_label_issues": int(row["Inverse Label Issues"]),
                "label_noise": float(row["Label Noise"]),
                "inverse_label_noise": float(row["Inverse Label Noise"]),
                "label_quality": float(row["Label Quality Score"]),
            }
        )
    return out


def _pairs(df: pd.DataFrame, classes: list[str], top: int) -> list[dict[str, Any]]:
    out = []
    for _, row in df.head(top).iterrows():
        out.append(
            {
                "class_a": classes[int(row["Class Index A"])],
                "class_b": classes[int(row["Class Index B"])],
                "n_overlapping": int(row["Num Overlapping Examples"]),
                "joint_probability": float(row["Joint Probability"]),
            }
        )
    return out


class OutlierCheck(Check):
    """Images that belong to no class: far from every other image in embedding space.

    The distance of an image is its mean cosine distance to its ``k`` nearest
    neighbours among the readable images (``ctx.oof.embeddings``). It is flagged
    when that distance exceeds ``Q3 + iqr_factor * IQR`` of all distances (a
    robust, distribution-free fence). ``outlier_score = 0.5 ** (d / fence)``: 1 for
    an image with identical neighbours, 0.5 exactly at the fence, towards 0 far
    beyond it. Extra ``outlier_distance``. Unreadable images: not flagged, NaN score.
    """

    name: ClassVar[str] = "outlier"
    requires: ClassVar[tuple[str, ...]] = ("oof",)

    @dataclasses.dataclass
    class Params(Check.Params):
        """Hyperparameters of the outlier check.

        Parameters
        ----------
        k
            Neighbours averaged per image.
        iqr_factor
            The fence is ``Q3 + iqr_factor * IQR`` of the distances.
        """

        k: int = 10
        iqr_factor: float = 2.0

    params: Params

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        from sklearn.neighbors import NearestNeighbors

        emb = ctx.oof.embeddings
        if emb is None:
            raise SkipCheck("no embeddings (user-supplied pred_probs without features)")
        emb = np.asarray(emb, dtype=float)
        rows = np.flatnonzero(np.isfinite(emb).all(axis=1)) if emb.shape[1] else np.array([], int)
        if len(rows) < 3:
            raise SkipCheck("fewer than 3 images with embeddings")
        x = emb[rows]
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        k = int(min(self.params.k, len(rows) - 1))
        nn = NearestNeighbors(n_neighbors=k + 1, metric="euclidean").fit(x)
        dist, _ = nn.kneighbors(x)
        # drop the self match (first column); cosine distance = euclid^2 / 2 on unit vectors
        d = (dist[:, 1:] ** 2 / 2.0).mean(axis=1)
        q1, q3 = np.percentile(d, [25, 75])
        fence = float(max(q3 + self.params.iqr_factor * (q3 - q1), 1e-12))
        n = len(ctx.paths)
        issue = np.zeros(n, dtype=bool)
        issue[rows] = d > fence
        score = np.full(n, np.nan)
        score[rows] = clip01(0.5 ** (d / fence))
        distance = np.full(n, np.nan)
        distance[rows] = d
        self.info = {
            "k": k,
            "fence": fence,
            "iqr_factor": self.params.iqr_factor,
            "n_issues": int(issue.sum()),
            "n_scored": int(len(rows)),
            "median_distance": float(np.median(d)),
        }
        return pd.DataFrame(
            {
                issue_col(self.name): issue,
                score_col(self.name): score,
                extra_col(self.name, "distance"): distance,
            },
            index=ctx.paths,
        )


LABEL_CHECKS: list[type[Check]] = [LabelCheck, OutlierCheck]
