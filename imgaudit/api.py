"""audit(): build the image table and the shared context, run the checks, assemble the result."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from .checks import CHECKS, DEFAULT_CHECKS, Check, SkipCheck
from .checks.properties import properties_info
from .config import AuditConfig
from .context import AuditContext
from .imageset import ImageSet, load_images
from .recommend import recommend
from .result import AuditResult

logger = logging.getLogger(__name__)

#: per-image properties from the decode pass copied into ``issues`` (before check columns)
BASE_COLUMNS = (
    "width",
    "height",
    "mode",
    "channels",
    "format",
    "file_size",
    "exif_orientation",
    "sha1",
)


def _select_checks(config: AuditConfig) -> list[Check]:
    names = list(config.checks) if config.checks is not None else list(DEFAULT_CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; available checks: {sorted(CHECKS)}")
    stray = sorted(set(config.check_options) - set(names))
    if stray:
        raise ValueError(
            f"check_options given for check(s) {stray} that are not run; running: {names}"
        )
    # Keep the registry's order whatever order the user listed them in: later checks
    # read earlier outputs (duplicate groups -> folds, fold models -> rotation probe).
    order = {n: i for i, n in enumerate(CHECKS)}
    names = sorted(dict.fromkeys(names), key=order.__getitem__)
    return [CHECKS[n](**config.check_options.get(n, {})) for n in names]


def _config_dict(config: AuditConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if f.name in ("pred_probs", "features"):
            v = None if v is None else {"shape": list(getattr(v, "shape", ()))}
        out[f.name] = v
    return out


def run_checks(ctx: AuditContext, checks: list[Check]) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    """Run ``checks`` in order on ``ctx``; return (check columns, info, issue types)."""
    frames: list[pd.DataFrame] = []
    info: dict[str, Any] = {}
    issue_types: list[str] = []
    seen_cols: dict[str, str] = {}
    for check in checks:
        t0 = time.perf_counter()
        logger.info("running check %s", check.name)
        try:
            df = check.run(ctx)
        except SkipCheck as why:
            info[check.name] = {**check.info, "skipped": str(why)}
            logger.info("check %s skipped: %s", check.name, why)
            continue
        df = check.validate(df, ctx.paths)
        for col in df.columns:
            if col in seen_cols:
                raise RuntimeError(
                    f"column {col!r} written by both {seen_cols[col]!r} and {check.name!r}"
                )
            seen_cols[col] = check.name
        ctx.outputs[check.name] = df
        frames.append(df)
        info[check.name] = check.info
        issue_types.extend(check.issue_types())
        logger.info("check %s done in %.1fs", check.name, time.perf_counter() - t0)
    cols = pd.concat(frames, axis=1) if frames else pd.DataFrame(index=ctx.paths)
    return cols, info, issue_types


def audit(
    source: str | Path | pd.DataFrame | ImageSet,
    labels: str | Path | pd.DataFrame | None = None,
    *,
    root: str | Path | None = None,
    config: AuditConfig | None = None,
    **options: Any,
) -> AuditResult:
    """Audit an image classification dataset before training on it.

    Parameters
    ----------
    source
        A folder (``root/<class>/*``, ``root/train|valid|test/<class>/*`` or unlabeled
        images), a CSV file or DataFrame shaped like fastai's ``from_csv``/``from_df``
        input (``fname,label[,is_valid]``), or an :class:`ImageSet`.
    labels
        A label CSV/DataFrame for a folder ``source`` (paths relative to it).
    root
        The folder the CSV/DataFrame paths are relative to (default: the CSV's folder).
    config
        An :class:`AuditConfig`; alternatively pass its fields as keyword ``options``
        (``size=224``, ``checks=[...]``, ``label_mode="fast"``, ...). Unknown options raise.

    Returns
    -------
    AuditResult

    Example
    -------
    >>> import imgaudit
    >>> result = imgaudit.audit("data/digits", size=128)         # doctest: +SKIP
    >>> result.summary                                             # doctest: +SKIP
    >>> result.clean_labels("data/digits/cleaned.csv")             # doctest: +SKIP
    """
    if config is not None and options:
        raise TypeError("pass either config= or keyword options, not both")
    cfg = config if config is not None else AuditConfig.from_options(**options)
    checks = _select_checks(cfg)
    imageset = source if isinstance(source, ImageSet) else load_images(source, labels=labels, root=root)
    ctx = AuditContext(imageset, cfg)
    try:
        check_cols, info, issue_types = run_checks(ctx, checks)
        table = imageset.table
        base = pd.DataFrame(index=ctx.paths)
        base["label"] = table["label"]
        base["split"] = table["split"]
        records = ctx.records
        for col in BASE_COLUMNS:
            if col in records:
                base[col] = records[col]
        issues = pd.concat([base, check_cols], axis=1)
        info = {
            "imageset": imageset.info,
            "properties": properties_info(records, ctx.labels, cfg.size),
            **info,
        }
        recommendations = recommend(issues, info, cfg)
    finally:
        ctx.close()
    return AuditResult(
        issues,
        info=info,
        recommendations=recommendations,
        config=_config_dict(cfg),
        root=imageset.root,
        issue_types=issue_types,
    )
