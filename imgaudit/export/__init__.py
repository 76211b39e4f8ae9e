"""Exports of an :class:`~imgaudit.result.AuditResult`: FiftyOne, cleaned CSVs, HTML report.

This package also holds the few helpers that read the result contract the same way
for every export (which issue types a result has, which of them group duplicates,
which images leak across splits), so the FiftyOne views and the CSV policy agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..columns import extra_col, issue_col, score_col

#: the issue type derived here from duplicate groups that span splits
SPLIT_LEAK = "split_leak"
#: the order splits are trusted in: within a group spanning splits, the member in the
#: earliest split is the one that stays; later-split members are the leaks
SPLIT_ORDER = ("train", "valid", "test")


def issue_types(result: Any) -> list[str]:
    """Issue types present in ``result.issues``, in the result's own order.

    Uses ``result.issue_types`` (or ``result.summary.issue_type``); every name returned
    has its ``is_<name>_issue`` column in ``result.issues``.
    """
    names = getattr(result, "issue_types", None)
    if names is None:
        summary = getattr(result, "summary", None)
        names = list(summary["issue_type"]) if summary is not None and len(summary) else []
    return [str(n) for n in names if issue_col(str(n)) in result.issues.columns]


def duplicate_checks(issues: pd.DataFrame, types: list[str]) -> list[str]:
    """The issue types that carry a duplicate group (``<check>_group``) column."""
    return [t for t in types if extra_col(t, "group") in issues.columns]


def _missing_group(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    if isinstance(value, (int, np.integer)) and int(value) < 0:
        return True
    return isinstance(value, str) and value.strip() in ("", "-1", "nan", "None")


def group_ids(issues: pd.DataFrame, check: str) -> pd.Series:
    """Normalised duplicate group ids of ``check``: ``None`` unless in a group of >= 2.

    Checks may mark "no group" with NaN, ``None``, ``-1`` or ``""``; they may also give
    singletons their own id. Both are reduced to ``None`` here so that "has a group"
    means "has at least one duplicate". Numeric ids come back as ``int``, others as
    ``str`` (object dtype).
    """
    raw = issues[extra_col(check, "group")]
    numeric = pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw)
    vals = [None if _missing_group(v) else (int(v) if numeric else str(v)) for v in raw.tolist()]
    out = pd.Series(vals, index=issues.index, dtype=object)
    counts = out.dropna().value_counts()
    multi = set(counts[counts >= 2].index)
    return out.where(out.isin(multi), None)


def keep_flags(issues: pd.DataFrame, check: str, groups: pd.Series) -> pd.Series:
    """Which member of each duplicate group to keep.

    Uses the check's ``<check>_keep`` column when it has one; otherwise keeps the
    member with the highest score (ties: first path), so each group keeps exactly one.
    Rows outside any group are ``True``.
    """
    kc = extra_col(check, "keep")
    if kc in issues.columns:
        keep = issues[kc].fillna(False).astype(bool)
        keep = keep.where(groups.notna(), True)
        # a group whose check marked no keeper would lose every copy: keep its best one
        has_keeper = keep[groups.notna()].groupby(groups[groups.notna()]).any()
        orphan = set(has_keeper[~has_keeper].index)
    else:
        keep = pd.Series(True, index=issues.index)
        keep.loc[groups.notna()] = False
        orphan = set(groups.dropna().unique())
    if orphan:
        sc = score_col(check)
        score = (
            issues[sc].astype(float) if sc in issues.columns else pd.Series(0.0, index=issues.index)
        )
        members = groups[groups.isin(orphan)]
        best = score[members.index].fillna(-1.0).groupby(members).idxmax()
        keep.loc[list(best.values)] = True
    return keep.astype(bool)


def split_leaks(issues: pd.DataFrame, types: list[str]) -> pd.DataFrame:
    """Images that duplicate an image of an earlier split (valid duplicating train, ...).

    Returns a frame indexed like ``issues`` with ``is_split_leak_issue`` (bool),
    ``split_leak_score`` (the duplicate check's score of the leaking image; 1.0 where
    none) and ``split_leak_group`` (``"<check>:<group id>"`` for every member of a group
    spanning splits, else ``None``). If the result already has a ``split_leak`` check,
    its flags and scores are used as they are; the groups still come from the duplicate
    checks unless that check has its own ``split_leak_group`` column.
    """
    ic, sc, gc = issue_col(SPLIT_LEAK), score_col(SPLIT_LEAK), extra_col(SPLIT_LEAK, "group")
    derived = _derived_split_leaks(issues, [t for t in types if t != SPLIT_LEAK], ic, sc, gc)
    if ic not in issues.columns:
        return derived
    out = pd.DataFrame(index=issues.index)
    out[ic] = issues[ic].fillna(False).astype(bool)
    out[sc] = issues[sc].astype(float) if sc in issues.columns else np.where(out[ic], 0.0, 1.0)
    out[gc] = issues[gc].astype(object) if gc in issues.columns else derived[gc]
    return out


def _derived_split_leaks(
    issues: pd.DataFrame, types: list[str], ic: str, sc: str, gc: str
) -> pd.DataFrame:
    leak = pd.Series(False, index=issues.index)
    score = pd.Series(1.0, index=issues.index)
    group = pd.Series(None, index=issues.index, dtype=object)
    if "split" in issues.columns and issues["split"].notna().any():
        rank = issues["split"].map(
            lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER)
        )
        for check in duplicate_checks(issues, types):
            members = group_ids(issues, check).dropna()
            with_split = members[issues.loc[members.index, "split"].notna().to_numpy()]
            if with_split.empty:
                continue
            r = rank[with_split.index]
            by_group = r.groupby(with_split.to_numpy())
            first = by_group.transform("min")
            spans = by_group.transform("nunique") > 1
            spanning = set(with_split[spans])
            in_span = members.isin(spanning)
            group.loc[members.index[in_span]] = [f"{check}:{g}" for g in members[in_span]]
            leaking = r.index[(spans & (r > first)).to_numpy()]
            leak.loc[leaking] = True
            csc = score_col(check)
            if csc in issues.columns:
                s = issues.loc[leaking, csc].astype(float).fillna(0.0).to_numpy()
            else:
                s = np.zeros(len(leaking))
            score.loc[leaking] = np.minimum(score.loc[leaking].to_numpy(), s)
    return pd.DataFrame({ic: leak, sc: score, gc: group}, index=issues.index)


__all__ = [
    "SPLIT_LEAK",
    "SPLIT_ORDER",
    "duplicate_checks",
    "group_ids",
    "issue_types",
    "keep_flags",
    "split_leaks",
]
