"""All audit options, with their documented defaults, in one place.

Check-specific hyperparameters live in each check's own ``Params`` dataclass
(see :mod:`imgaudit.checks.base`); users pass them as
``check_options={"near_duplicates": {"radius": 10}}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np


def default_cache_dir() -> Path:
    """Where decoded properties, hashes, thumbnails and predictions are cached.

    ``$IMGAUDIT_CACHE_DIR`` wins, then ``$XDG_CACHE_HOME/imgaudit``, then
    ``~/.cache/imgaudit``. Never inside the dataset: source trees are read-only to us.
    """
    env = os.environ.get("IMGAUDIT_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "imgaudit"


@dataclass
class AuditConfig:
    """Options of :func:`imgaudit.audit`.

    Parameters
    ----------
    size
        The input size the model trains at (short side, pixels). Images whose
        short side is below it are flagged ``low_resolution`` (they get upsampled).
    checks
        Names of the checks to run; ``None`` runs :data:`imgaudit.checks.DEFAULT_CHECKS`.
    check_options
        Per-check hyperparameters, ``{check_name: {param: value}}``.
    num_workers
        Processes for the decode pass and data loading; ``None`` means
        ``os.cpu_count()`` read at call time.
    cache_dir
        On-disk cache; ``None`` means :func:`default_cache_dir`. ``False`` disables it.
    progress
        Show progress bars on long stages.
    seed
        Seed for folds, training and sampling.
    decode_size
        Target short side for the shared decode pass (JPEG draft mode decodes at
        the smallest power-of-two scale that is still at least this big; other
        formats are box-reduced by an integer factor to at least this). 64 is what
        the sharpness statistic (computed at a 64 px short side), the 32x32 hashes
        of ~1024 px photos need (a 1024x768 JPEG decodes at
        1/8, 128x96); a larger value only costs decode time (128, the former
        default, decodes such photos at 1/4: ~35% more time per image in
        ``benchmarks/duplicates.py``).
    thumbnail_size
        Longest side of the thumbnails of reports and galleries (made on demand
        for the images they show, then cached).
    max_pixels
        Decompression-bomb guard: images whose header claims more pixels are
        reported unreadable without being decoded.
    hash_kinds
        Perceptual hashes computed in the decode pass (``phash``, ``dhash``,
        ``whash``, ``ahash``; ``phash_jitter`` adds phashes of 5%-cropped and
        +-5-degree-rotated views, which is what catches small crops and rotations;
        ``phash_center`` the phash of the middle 70%, which catches copies with a
        watermark or logo near the edge).
    label_mode
        ``"fast"``: one pass of a frozen pretrained backbone to embeddings, then
        K-fold linear heads. ``"finetune"``: K fastai ``vision_learner`` fits.
    n_folds, arch, train_size, epochs, batch_size, lr, pretrained
        Out-of-fold training options (see :mod:`imgaudit.training`).
    finetune_ensemble
        ``"finetune"`` mode only: average the fine-tuned models' out-of-fold
        probabilities with the fast mode's linear heads (fitted on the same folds
        from the frozen features it computes anyway for the embeddings). Better
        calibrated than either alone; ``False`` gives the fine-tuned models' own.
    pred_probs, features
        User-supplied out-of-sample predicted probabilities (N x K, rows in the
        order of the image table, columns in sorted class order) and optional
        features; they skip training.
    """

    size: int = 224
    checks: tuple[str, ...] | None = None
    check_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_workers: int | None = None
    cache_dir: str | Path | Literal[False] | None = None
    progress: bool = True
    seed: int = 0
    # shared decode pass
    decode_size: int = 64
    thumbnail_size: int = 128
    max_pixels: int = 89_478_485
    hash_kinds: tuple[str, ...] = ("phash", "phash_jitter", "phash_center")
    # out-of-fold predictions
    label_mode: Literal["fast", "finetune"] = "fast"
    n_folds: int = 5
    arch: str = "resnet18"
    train_size: int | None = None
    epochs: int = 3
    batch_size: int = 64
    lr: float | None = None
    pretrained: bool | Literal["auto"] = "auto"
    finetune_ensemble: bool = True
    pred_probs: np.ndarray | None = field(default=None, repr=False)
    features: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise ValueError(f"size must be a positive number of pixels, got {self.size!r}")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds!r}")
        if self.label_mode not in ("fast", "finetune"):
            raise ValueError(f"label_mode must be 'fast' or 'finetune', got {self.label_mode!r}")
        if self.checks is not None:
            self.checks = tuple(self.checks)
        self.hash_kinds = tuple(self.hash_kinds)

    @classmethod
    def from_options(cls, **options: Any) -> AuditConfig:
        """Build a config from keyword options; unknown names raise ``TypeError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(
                f"unknown audit option(s) {unknown}; valid options are {sorted(known)}"
            )
        return cls(**options)

    def workers(self) -> int:
        """Number of worker processes, resolved now (never at import time)."""
        if self.num_workers is not None:
            return max(0, int(self.num_workers))
        return os.cpu_count() or 1

    def resolved_cache_dir(self) -> Path | None:
        if self.cache_dir is False:
            return None
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()
