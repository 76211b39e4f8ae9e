"""The check contract: one check = one small class.

A check declares its ``name``, the context artifacts it ``requires`` and a
``Params`` dataclass of keyword hyperparameters with documented defaults. Its
``__init__`` only stores those (an unknown name raises ``TypeError``). ``run(ctx)``
returns one DataFrame indexed exactly like ``ctx.paths`` with, for every name in
``issue_names`` (default: just ``name``), ``is_<n>_issue`` (bool) and ``<n>_score``
(float in [0, 1], lower = worse), plus optional ``<name>_*`` extras. Non-tabular
findings go in ``self.info`` (a dict) during ``run``.

A check that cannot apply (no labels, rotation-invariant data, ...) raises
:class:`SkipCheck` with the reason; the orchestrator records it in ``info``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ..columns import issue_col, score_col

if TYPE_CHECKING:
    from ..context import AuditContext


class SkipCheck(Exception):
    """Raised by ``Check.run`` when the check does not apply; the message says why."""


class Check(ABC):
    """Base class of every check."""

    name: ClassVar[str]
    #: context artifacts read by ``run`` ("records", "hashes", "oof", ...)
    requires: ClassVar[tuple[str, ...]] = ("records",)
    #: issue types this check writes columns for; defaults to ``(name,)``
    issue_names: ClassVar[tuple[str, ...] | None] = None

    @dataclasses.dataclass
    class Params:
        """No hyperparameters."""

    def __init__(self, **params: Any) -> None:
        valid = [f.name for f in dataclasses.fields(self.Params)]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise TypeError(
                f"check {self.name!r} got unknown option(s) {unknown}; valid: {valid}"
            )
        self.params = self.Params(**params)
        self.info: dict[str, Any] = {}

    @classmethod
    def issue_types(cls) -> tuple[str, ...]:
        return cls.issue_names or (cls.name,)

    @abstractmethod
    def run(self, ctx: AuditContext) -> pd.DataFrame:
        """Return per-image columns indexed like ``ctx.paths``."""

    def validate(self, df: pd.DataFrame, paths: pd.Index) -> pd.DataFrame:
        """Check a ``run`` output against the contract; return it with exact dtypes."""
        if not df.index.equals(paths):
            raise RuntimeError(f"check {self.name!r} returned an index that differs from the image paths")
        out = df.copy()
        for n in self.issue_types():
            ic, sc = issue_col(n), score_col(n)
            if ic not in out or sc not in out:
                raise RuntimeError(f"check {self.name!r} must return {ic!r} and {sc!r}")
            out[ic] = out[ic].fillna(False).astype(bool)
            scores = out[sc].astype(float)
            finite = scores.dropna()
            if len(finite) and (finite.min() < 0 or finite.max() > 1):
                raise RuntimeError(f"check {self.name!r}: {sc} outside [0, 1]")
            out[sc] = scores
        return out


def empty_frame(paths: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(index=paths)


def clip01(x: np.ndarray | pd.Series) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=float), 0.0, 1.0)
