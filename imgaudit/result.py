"""AuditResult: what an audit found, in the shape other tools read."""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._io import atomic_write
from .columns import issue_col, score_col

RESULT_VERSION = 1
_FILES = ("issues.pkl", "summary.csv", "info.json", "meta.json")


def jsonable(obj: Any) -> Any:
    """Convert numpy/pandas/path values into plain JSON types (recursively)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, pd.DataFrame):
        return jsonable(obj.to_dict(orient="list"))
    if isinstance(obj, pd.Series):
        return jsonable(obj.to_dict())
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def summarize(issues: pd.DataFrame, issue_types: Iterable[str]) -> pd.DataFrame:
    """One row per issue type: how many images it flags and the mean score."""
    rows = []
    for name in issue_types:
        ic, sc = issue_col(name), score_col(name)
        if ic not in issues:
            continue
        flagged = issues[ic].astype(bool)
        score = issues[sc].astype(float) if sc in issues else pd.Series(dtype=float)
        rows.append(
            {
                "issue_type": name,
                "num_issues": int(flagged.sum()),
                "score": float(score.mean()) if score.notna().any() else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=["issue_type", "num_issues", "score"])


class AuditResult:
    """The outcome of :func:`imgaudit.audit`.

    Attributes
    ----------
    issues : pandas.DataFrame
        One row per image, indexed by its path relative to ``root``: ``label``,
        ``split``, image properties, then for each check ``X`` the columns
        ``is_X_issue`` (bool) and ``X_score`` (float in [0, 1], lower = worse) and
        ``X_*`` extras.
    summary : pandas.DataFrame
        One row per issue type: ``issue_type``, ``num_issues``, ``score``.
    info : dict
        Non-tabular findings keyed by check (resolution histograms, duplicate
        groups, confident joint, rotation sensitivity, split leakage, ...).
    recommendations : dict
        The fastai recipe the findings support (``code``, ``reasons``, ``warnings``).
    config : dict
        The options the audit ran with.
    root : str
        The dataset root the paths are relative to.

    Example
    -------
    >>> result = imgaudit.audit("data/pets")            # doctest: +SKIP
    >>> result.summary                                   # doctest: +SKIP
    >>> result.get_issues("near_duplicates").head()      # doctest: +SKIP
    >>> result.save("audit_out"); AuditResult.load("audit_out")  # doctest: +SKIP
    """

    def __init__(
        self,
        issues: pd.DataFrame,
        summary: pd.DataFrame | None = None,
        info: dict[str, Any] | None = None,
        recommendations: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        root: str | Path = ".",
        issue_types: Iterable[str] | None = None,
    ) -> None:
        self.issues = issues
        if issue_types is None:
            issue_types = [
                c[3:-6] for c in issues.columns if c.startswith("is_") and c.endswith("_issue")
            ]
        self.issue_types: list[str] = list(issue_types)
        self.summary = summary if summary is not None else summarize(issues, self.issue_types)
        # info and recommendations are kept in their JSON form so that
        # save/load round-trips exactly.
        self.info: dict[str, Any] = jsonable(info or {})
        self.recommendations: dict[str, Any] = jsonable(recommendations or {})
        self.config: dict[str, Any] = jsonable(config or {})
        self.root = str(root)

    # -- reading ----------------------------------------------------------------------
    def get_issues(self, check: str, flagged_only: bool = True) -> pd.DataFrame:
        """Rows of one issue type, worst (lowest score) first.

        Example
        -------
        >>> result.get_issues("label")[["label", "label_suggested", "label_score"]]  # doctest: +SKIP
        """
        ic, sc = issue_col(check), score_col(check)
        if ic not in self.issues:
            raise KeyError(
                f"no issue type {check!r} in this result; available: {self.issue_types}"
            )
        df = self.issues[self.issues[ic]] if flagged_only else self.issues
        return df.sort_values(sc, kind="stable") if sc in df else df

    @property
    def num_issues(self) -> int:
        """Number of images flagged by at least one check."""
        cols = [issue_col(n) for n in self.issue_types if issue_col(n) in self.issues]
        if not cols:
            return 0
        return int(self.issues[cols].any(axis=1).sum())

    def __repr__(self) -> str:
        lines = [f"AuditResult({len(self.issues)} images under {self.root!r})"]
        for row in self.summary.itertuples():
            lines.append(f"  {row.issue_type:<20} {row.num_issues:>7}")
        return "\n".join(lines)

    # -- persistence ------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the result to ``directory`` (created if needed); files are written atomically.

        ``issues.pkl`` is a pandas pickle (it keeps every dtype and non-UTF-8 file names):
        load only results you made yourself. ``issues.csv`` is a human-readable copy.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / "issues.pkl", pickle.dumps(self.issues, protocol=pickle.HIGHEST_PROTOCOL))
        csv = self.issues.to_csv().encode("utf-8", "backslashreplace")
        atomic_write(d / "issues.csv", csv)
        atomic_write(d / "summary.csv", self.summary.to_csv(index=False).encode())
        atomic_write(d / "info.json", json.dumps(self.info, indent=1).encode())
        meta = {
            "version": RESULT_VERSION,
            "root": self.root,
            "issue_types": self.issue_types,
            "config": self.config,
            "recommendations": self.recommendations,
        }
        atomic_write(d / "meta.json", json.dumps(meta, indent=1).encode())
        return d

    @classmethod
    def load(cls, directory: str | Path) -> AuditResult:
        """Read a result written by :meth:`save`."""
        d = Path(directory)
        missing = [f for f in _FILES if not (d / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{d} is not a saved imgaudit result (missing {missing})")
        meta = json.loads((d / "meta.json").read_text())
        if meta.get("version") != RESULT_VERSION:
            raise ValueError(f"{d}: result version {meta.get('version')} not supported")
        issues = pd.read_pickle(d / "issues.pkl")
        summary = pd.read_csv(d / "summary.csv")
        if summary.empty:
            summary = pd.DataFrame(columns=["issue_type", "num_issues", "score"])
        info = json.loads((d / "info.json").read_text())
        return cls(
            issues,
            summary=summary,
            info=info,
            recommendations=meta.get("recommendations"),
            config=meta.get("config"),
            root=meta["root"],
            issue_types=meta.get("issue_types"),
        )

    # -- exports (each lives in imgaudit.export) ------------------------------------------
    def to_fiftyone(self, name: str | None = None, overwrite: bool = False, **kwargs: Any) -> Any:
        """Export to a persistent FiftyOne dataset; see :func:`imgaudit.export.fiftyone.to_fiftyone`."""
        from .export.fiftyone import to_fiftyone

        return to_fiftyone(self, name=name, overwrite=overwrite, **kwargs)

    def clean_labels(self, out_csv: str | Path, **policy: Any) -> Any:
        """Write a cleaned label CSV for fastai; see :func:`imgaudit.export.csv.clean_labels`."""
        from .export.csv import clean_labels

        return clean_labels(self, out_csv, **policy)

    def report(self, path: str | Path = "report.html", **kwargs: Any) -> Path:
        """Write the self-contained HTML report; see :func:`imgaudit.export.report.write_report`."""
        from .export.report import write_report

        return write_report(self, path, **kwargs)
