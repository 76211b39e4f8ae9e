"""Cleaned label CSVs that fastai's ``ImageDataLoaders.from_csv`` reads as they are.

:func:`clean_labels` applies a policy (each rule an option with a documented default) to
an audit result, lets a reviewer's decisions from FiftyOne override it, and writes

- the cleaned CSV: ``fname,label,is_valid`` (``fname`` relative to the dataset root),
  read by ``ImageDataLoaders.from_csv(path=root, csv_fname=out_csv, valid_col="is_valid")``.
  (fastai's ``from_csv`` ignores ``is_valid`` unless ``valid_col`` names it: without it
  fastai draws a random split, which may put duplicates on both sides.)
- ``changes.csv``: one row per image the cleaning touched or deliberately left alone:
  ``path, original_label, new_label, action (drop | relabel | keep), reason, score``.

Both are written atomically (temporary file in the same directory, then ``os.replace``);
source images are never opened for writing.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._io import atomic_write
from ..columns import extra_col, issue_col, score_col
from . import SPLIT_LEAK, duplicate_checks, group_ids, issue_types, keep_flags
from . import split_leaks as find_split_leaks

logger = logging.getLogger(__name__)

CHANGES_COLUMNS = ["path", "original_label", "new_label", "action", "reason", "score"]


@dataclass
class CleanPolicy:
    """What :func:`clean_labels` does with each kind of finding.

    Parameters
    ----------
    unreadable
        ``"drop"`` (default): images that cannot be decoded would crash training.
        ``"keep"`` leaves them in (only sensible if you will repair the files).
    duplicates
        ``"keep_one"`` (default): of each exact- and near-duplicate group keep only the
        group's ``keep`` image. ``"keep"``: leave every copy.
    split_leaks
        ``"drop"`` (default): drop validation/test images that duplicate an image of an
        earlier split (they inflate validation scores). ``"keep"``: leave them.
    label_issues
        ``"drop"`` (default): drop images flagged with a label issue (cleanlab's usual
        remedy: a wrong automatic relabel adds noise, a dropped image costs little).
        ``"relabel"``: take the suggested label when its confidence is at least
        ``relabel_threshold``, else keep the given label (logged as ``keep``).
        ``"keep"``: leave labels as given.
    relabel_threshold
        Minimum ``label_confidence`` for an automatic relabel (default 0.9).
    valid_pct
        Only when the source had no split: fraction of images written with
        ``is_valid=True`` (default 0.2), chosen at random with ``seed`` while keeping
        duplicate groups on one side (no leak between the two).
    seed
        Seed of that split.
    """

    unreadable: Literal["drop", "keep"] = "drop"
    duplicates: Literal["keep_one", "keep"] = "keep_one"
    split_leaks: Literal["drop", "keep"] = "drop"
    label_issues: Literal["drop", "relabel", "keep"] = "drop"
    relabel_threshold: float = 0.9
    valid_pct: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        choices = {
            "unreadable": ("drop", "keep"),
            "duplicates": ("keep_one", "keep"),
            "split_leaks": ("drop", "keep"),
            "label_issues": ("drop", "relabel", "keep"),
        }
        for opt, allowed in choices.items():
            if getattr(self, opt) not in allowed:
                raise ValueError(f"{opt} must be one of {allowed}, got {getattr(self, opt)!r}")
        if not 0.0 <= self.relabel_threshold <= 1.0:
            raise ValueError(f"relabel_threshold must be in [0, 1], got {self.relabel_threshold!r}")
        if not 0.0 < self.valid_pct < 1.0:
            raise ValueError(f"valid_pct must be in (0, 1), got {self.valid_pct!r}")


def _atomic_write_csv(df: pd.DataFrame, path: Path) -> None:
    # surrogateescape: non-UTF-8 file names are written back as their original bytes
    atomic_write(path, df.to_csv(index=False).encode("utf-8", "surrogateescape"))


def _random_valid(index: pd.Index, groups: list[pd.Series], pct: float, seed: int) -> pd.Series:
    """A seeded validation pick that keeps every duplicate group on one side."""
    # union-find over the duplicate groups of all checks: a near-duplicate group and an
    # exact one may chain images together, and all of them must land on the same side
    parent = {p: p for p in index}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for gid in groups:
        members = gid.dropna()
        for _, idx in members.groupby(members).groups.items():
            first = find(idx[0])
            for p in idx[1:]:
                parent[find(p)] = first
    comp = pd.Series([find(p) for p in index], index=index)
    comps = comp.unique()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(comps))
    sizes = comp.value_counts()
    target, total, chosen = pct * len(index), 0, set()
    for i in order:
        if total >= target:
            break
        chosen.add(comps[i])
        total += int(sizes[comps[i]])
    return comp.isin(chosen)


def clean_labels(
    result: Any,
    out_csv: str | Path,
    *,
    unreadable: Literal["drop", "keep"] = "drop",
    duplicates: Literal["keep_one", "keep"] = "keep_one",
    split_leaks: Literal["drop", "keep"] = "drop",
    label_issues: Literal["drop", "relabel", "keep"] = "drop",
    relabel_threshold: float = 0.9,
    valid_pct: float = 0.2,
    seed: int = 0,
    dataset: Any = None,
    changes_csv: str | Path | None = None,
) -> pd.DataFrame:
    """Write a cleaned label CSV for fastai and a ``changes.csv`` explaining it.

    Parameters
    ----------
    result
        An :class:`~imgaudit.result.AuditResult` of a labelled dataset.
    out_csv
        Where to write ``fname,label,is_valid``. ``fname`` is relative to the dataset
        root, so ``ImageDataLoaders.from_csv(path=result.root, csv_fname=out_csv,
        valid_col="is_valid")`` reads it as is (an absolute ``out_csv`` works there
        too). When the source was a label table, its own column names are reused
        (``result.info["imageset"]["columns"]``), and a source split column is written
        back too. ``is_valid`` comes from the source's split (``split == "valid"``);
        test-split images are left out, since ``from_csv`` would train on them. Without
        a source split, a duplicate-aware random ``valid_pct`` split is written.
    unreadable, duplicates, split_leaks, label_issues, relabel_threshold, valid_pct, seed
        The automatic policy; see :class:`CleanPolicy` for each option and its default.
    dataset
        ``None``, or the name of (or a loaded) FiftyOne dataset exported by
        :func:`imgaudit.export.fiftyone.to_fiftyone`. Its reviewer decisions override the
        automatic policy: tag ``remove`` drops the image, ``keep`` keeps it with its
        label, an edited ``ground_truth`` relabels it, and tag ``relabel`` without an
        edit takes the suggested label. (An unreadable image is still dropped.)
    changes_csv
        Where to write the changes; default ``changes.csv`` next to ``out_csv``.

    Returns
    -------
    pandas.DataFrame
        The cleaned table as written (``fname``, ``label``, ``is_valid``).

    Example
    -------
    >>> result.clean_labels("cleaned.csv", label_issues="relabel", dataset="pets-audit")  # doctest: +SKIP
    >>> dls = ImageDataLoaders.from_csv(result.root, "cleaned.csv", valid_col="is_valid",
    ...                                 item_tfms=Resize(224))  # doctest: +SKIP
    """
    policy = CleanPolicy(
        unreadable=unreadable,
        duplicates=duplicates,
        split_leaks=split_leaks,
        label_issues=label_issues,
        relabel_threshold=relabel_threshold,
        valid_pct=valid_pct,
        seed=seed,
    )
    issues: pd.DataFrame = result.issues
    out_csv = Path(out_csv)
    changes_path = (
        Path(changes_csv) if changes_csv is not None else out_csv.with_name("changes.csv")
    )
    if out_csv.absolute() == changes_path.absolute():
        raise ValueError("out_csv and changes_csv must be different files")
    root = Path(str(result.root)).absolute()
    for target in (out_csv, changes_path):
        rel = os.path.relpath(target.absolute(), root)
        if rel in issues.index:
            raise ValueError(f"refusing to overwrite {target}: it is one of the audited images")
    if "label" not in issues.columns or issues["label"].isna().all():
        raise ValueError("clean_labels needs a labelled dataset: the result has no labels")

    types = issue_types(result)
    labels = issues["label"].astype(object)
    new_label = labels.copy()
    action = pd.Series(None, index=issues.index, dtype=object)
    reason = pd.Series(None, index=issues.index, dtype=object)
    score = pd.Series(np.nan, index=issues.index, dtype=float)
    decided = pd.Series(False, index=issues.index)  # a rule already applied to the row

    def apply(
        mask: pd.Series, act: str, why: str, sc: pd.Series | float, to: pd.Series | None = None
    ) -> None:
        """Record ``act`` for the rows of ``mask`` no earlier rule has decided."""
        m = mask & ~decided
        if to is not None:
            new_label[m] = to[m]
        action[m] = act
        reason[m] = why
        score[m] = sc[m] if isinstance(sc, pd.Series) else sc
        decided[m] = True

    # 1. unreadable files: first, since even a reviewer's keep cannot make them train
    unread = pd.Series(False, index=issues.index)
    if "unreadable" in types:
        unread = issues[issue_col("unreadable")].fillna(False).astype(bool)
        if policy.unreadable == "drop":
            apply(unread, "drop", "unreadable", _scores(issues, "unreadable"))

    # 2. the reviewer's decisions
    if dataset is not None:
        _apply_review(result, dataset, issues, unread, apply)

    # 3. automatic policy, most certain first
    apply(labels.isna(), "drop", "no label", np.nan)
    leaks = find_split_leaks(issues, types)
    if policy.split_leaks == "drop":
        apply(leaks[issue_col(SPLIT_LEAK)], "drop", "split leak: duplicates an image of an "
              "earlier split", leaks[score_col(SPLIT_LEAK)])  # fmt: skip
    dups = duplicate_checks(issues, types)
    groups = [group_ids(issues, c) for c in dups]
    if policy.duplicates == "keep_one":
        for c, gid in zip(dups, groups, strict=True):
            keep = keep_flags(issues, c, gid)
            apply(gid.notna() & ~keep, "drop", f"{c}: another copy is kept", _scores(issues, c))
    if "label" in types:
        flagged = issues[issue_col("label")].fillna(False).astype(bool)
        lscore = _scores(issues, "label")
        if policy.label_issues == "drop":
            apply(flagged, "drop", "label issue", lscore)
        elif policy.label_issues == "relabel":
            sug, conf = _suggestions(issues)
            sure = flagged & sug.notna() & (conf >= policy.relabel_threshold)
            apply(
                sure,
                "relabel",
                f"label issue, suggestion confidence >= {policy.relabel_threshold}",
                lscore,
                sug,
            )
            apply(
                flagged,
                "keep",
                f"label issue, suggestion confidence < {policy.relabel_threshold}",
                lscore,
            )
        else:
            apply(flagged, "keep", "label issue, kept by policy", lscore)

    # 4. assemble
    kept = action.ne("drop")
    splits = issues["split"] if "split" in issues.columns else pd.Series(None, index=issues.index)
    if splits.notna().any():
        if splits.isna().any():
            warnings.warn(
                f"{int(splits.isna().sum())} image(s) have no split; they are written as training images",
                stacklevel=2,
            )
        is_test = splits.eq("test")
        if (is_test & kept).any():
            logger.info("%d test-split images left out of %s", int((is_test & kept).sum()), out_csv)
        is_valid = splits.eq("valid")
        kept = kept & ~is_test
    else:
        is_valid = _random_valid(issues.index[kept], [g[kept] for g in groups],
                                 policy.valid_pct, policy.seed).reindex(issues.index, fill_value=False)  # fmt: skip
    names = _column_names(result)
    cleaned = pd.DataFrame(
        {
            names["file"]: issues.index[kept].astype(str),
            names["label"]: new_label[kept].astype(str).to_numpy(),
            names["is_valid"]: is_valid[kept].astype(bool).to_numpy(),
        }
    )
    if "split" in names:
        cleaned[names["split"]] = splits[kept].to_numpy()
    changed = action.notna()
    changes = pd.DataFrame(
        {
            "path": issues.index[changed].astype(str),
            "original_label": labels[changed].to_numpy(),
            "new_label": [
                None if a == "drop" else v
                for a, v in zip(action[changed], new_label[changed], strict=True)
            ],
            "action": action[changed].to_numpy(),
            "reason": reason[changed].to_numpy(),
            "score": score[changed].to_numpy(),
        },
        columns=CHANGES_COLUMNS,
    )
    if not cleaned[names["is_valid"]].any():
        warnings.warn("the cleaned CSV has no validation images", stacklevel=2)
    _atomic_write_csv(cleaned, out_csv)
    _atomic_write_csv(changes, changes_path)
    counts = changes["action"].value_counts().to_dict()
    logger.info(
        "wrote %d images to %s; changes %s in %s", len(cleaned), out_csv, counts, changes_path
    )
    return cleaned


def _column_names(result: Any) -> dict[str, str]:
    """Output column names: the source table's own where it had them, else fastai's."""
    names = {"file": "fname", "label": "label", "is_valid": "is_valid"}
    info = getattr(result, "info", None) or {}
    source = (info.get("imageset") or {}).get("columns") or {}
    for key in ("file", "label", "is_valid", "split"):
        value = source.get(key)
        if isinstance(value, str) and value.strip():
            names[key] = value
    if len(set(names.values())) < len(names):  # a clash would merge columns: use defaults
        return {"file": "fname", "label": "label", "is_valid": "is_valid"}
    return names


def _scores(issues: pd.DataFrame, check: str) -> pd.Series:
    sc = score_col(check)
    if sc in issues.columns:
        return issues[sc].astype(float)
    return pd.Series(np.nan, index=issues.index)


def _suggestions(issues: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    sc, cc = extra_col("label", "suggested"), extra_col("label", "confidence")
    sug = (
        issues[sc].astype(object)
        if sc in issues.columns
        else pd.Series(None, index=issues.index, dtype=object)
    )
    conf = (
        issues[cc].astype(float) if cc in issues.columns else pd.Series(np.nan, index=issues.index)
    )
    return sug.where(sug.notna(), None), conf


def _apply_review(
    result: Any, dataset: Any, issues: pd.DataFrame, unread: pd.Series, apply: Any
) -> None:
    """Fold the reviewer's decisions from a FiftyOne dataset into the cleaning."""
    from .fiftyone import INFO_KEY, _fo, read_review

    fo = _fo()
    ds = fo.load_dataset(dataset) if isinstance(dataset, str) else dataset
    exported_root = ds.info.get(INFO_KEY, {}).get("root")
    root = str(Path(str(result.root)).absolute())
    if exported_root is not None and exported_root != root:
        warnings.warn(
            f"FiftyOne dataset {ds.name!r} was exported from {exported_root}, not {root}; "
            "its decisions are matched by relative path",
            stacklevel=3,
        )
    decisions = read_review(ds)
    unknown = decisions.index.difference(issues.index)
    if len(unknown):
        warnings.warn(
            f"{len(unknown)} reviewed image(s) are not in this result and were ignored "
            f"(first: {list(unknown[:3])})",
            stacklevel=3,
        )
    decision = decisions["decision"].reindex(issues.index)
    corrected = decisions["label"].reindex(issues.index)
    if (decision.notna() & unread).any():
        bad = list(issues.index[(decision.notna() & unread).to_numpy()])
        warnings.warn(f"reviewer decisions on unreadable images ignored: {bad[:5]}", stacklevel=3)
    sug, _ = _suggestions(issues)
    nan = pd.Series(np.nan, index=issues.index)
    relabel = decision.eq("relabel")
    target = corrected.where(corrected.notna(), sug).astype(object)
    apply(decision.eq("remove"), "drop", "reviewer: remove", nan)
    apply(relabel & corrected.notna(), "relabel", "reviewer: corrected label", nan, target)
    apply(relabel & target.notna(), "relabel", "reviewer: suggested label", nan, target)
    orphan = relabel & target.isna()
    if orphan.any():
        warnings.warn(
            f"{int(orphan.sum())} image(s) tagged 'relabel' have neither a corrected "
            "ground_truth nor a suggestion; kept as labelled",
            stacklevel=3,
        )
    apply(orphan, "keep", "reviewer: relabel without a label", nan)
    apply(decision.eq("keep"), "keep", "reviewer: keep", nan)


__all__ = ["CHANGES_COLUMNS", "CleanPolicy", "clean_labels"]
