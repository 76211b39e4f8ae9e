"""Plots of the image properties, rendered straight to PNG.

Uses matplotlib's object API with the Agg canvas (no ``pyplot``): no global
backend switch, no open figure windows, safe in worker threads and notebooks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: above this many classes the scatter has no legend (colours repeat meaninglessly)
MAX_LEGEND_CLASSES = 20


def _log_pixels(axis: Any) -> None:
    """Log scale with plain pixel numbers (no 10^x, no cluttered minor labels)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    getattr(axis.axes, f"set_{axis.axis_name}scale")("log")
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def resolution_plot(
    records: pd.DataFrame,
    labels: pd.Series | None,
    size: int,
    out_png: str | Path,
) -> Path:
    """Width x height scatter coloured by class, and a short-side histogram.

    Parameters
    ----------
    records
        ``DecodeOutput.records`` (uses ``ok``, ``width``, ``height``).
    labels
        Labels aligned with ``records`` (None: one colour).
    size
        Training size; marked on both panels (images left of / below it get upsampled).
    out_png
        Where to write the PNG (parent folders are created).

    Returns
    -------
    Path
        ``out_png``.

    Examples
    --------
    >>> resolution_plot(ctx.records, ctx.labels, 224, "out/resolution.png")  # doctest: +SKIP
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ok = records["ok"].to_numpy(dtype=bool)
    w = records["width"].to_numpy(float)[ok]
    h = records["height"].to_numpy(float)[ok]
    short = np.minimum(w, h)
    lab = (
        labels.reindex(records.index)[ok].astype(object).where(lambda s: s.notna(), "(no label)").astype(str).to_numpy()
        if labels is not None
        else np.full(len(w), "all images", dtype=object)
    )
    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)

    classes = sorted(set(lab.tolist()))
    cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
    # jitter-free scatter; small markers and alpha so 50k points stay readable
    alpha = 0.8 if len(w) < 500 else 0.3
    for k, cls in enumerate(classes):
        m = lab == cls
        ax1.scatter(w[m], h[m], s=12, alpha=alpha, color=cmap(k % cmap.N), label=f"{cls} ({int(m.sum())})", edgecolors="none")
    if len(w):
        spread = max(w.max(), h.max()) / max(min(w.min(), h.min()), 1.0)
        if spread > 20:
            for axis in (ax1.xaxis, ax1.yaxis):
                _log_pixels(axis)
        hi = max(w.max(), h.max(), size) * 1.1
        # the L-shaped boundary where the short side equals the training size
        ax1.plot([size, size, hi], [hi, size, size], color="red", lw=1.2, ls="--", label=f"short side = {size}")
    ax1.set_xlabel("width (px, as displayed)")
    ax1.set_ylabel("height (px, as displayed)")
    ax1.set_title(f"Image sizes ({len(w)} readable of {len(records)})")
    if len(w) and len(classes) <= MAX_LEGEND_CLASSES:
        ax1.legend(fontsize=8, loc="best", markerscale=1.5)

    if len(short):
        lo = max(short.min(), 1.0)
        top = max(short.max(), size)
        bins = np.geomspace(lo, top * 1.001, 30) if top / lo > 20 else np.linspace(0, top * 1.05, 30)
        ax2.hist(short, bins=bins, color="#4c72b0")
        if top / lo > 20:
            _log_pixels(ax2.xaxis)
    below = int((short < size).sum())
    ax2.axvline(size, color="red", ls="--", lw=1.2, label=f"target size {size}: {below} image(s) below")
    ax2.set_xlabel("short side (px)")
    ax2.set_ylabel("images")
    ax2.set_title("Short side distribution")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    logger.debug("wrote %s", out)
    return out
