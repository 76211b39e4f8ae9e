"""AuditContext: the shared, cached work every check reads.

Artifacts are computed lazily, once, on first access:

- ``records``: one row per image from the single decode pass (properties, stats,
  content hashes), see :mod:`imgaudit.decode`;
- ``hashes``: ``{kind: uint64 array (N, 8)}`` perceptual hashes of the 8 dihedral
  views (column 0 = the image as displayed, EXIF orientation applied);
- ``oof``: out-of-fold predictions, embeddings and fold models, see
  :mod:`imgaudit.training`.

Checks also see the outputs of the checks that ran before them (``outputs``), so
that e.g. the label stage can keep near-duplicate groups inside one fold.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .cache import Cache
from .config import AuditConfig
from .imageset import ImageSet

if TYPE_CHECKING:
    from PIL import Image

    from .decode import DecodeOutput
    from .training import OOF

logger = logging.getLogger(__name__)


class AuditContext:
    """Shared state of one audit run."""

    def __init__(self, imageset: ImageSet, config: AuditConfig | None = None) -> None:
        self.imageset = imageset
        self.config = config or AuditConfig()
        cache_dir = self.config.resolved_cache_dir()
        self.cache: Cache | None = Cache(cache_dir) if cache_dir is not None else None
        self.outputs: dict[str, pd.DataFrame] = {}
        self.info: dict[str, Any] = {}
        self._decoded: DecodeOutput | None = None
        self._oof: OOF | None = None

    # -- the image table ------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.imageset.root

    @property
    def paths(self) -> pd.Index:
        return self.imageset.paths

    @property
    def labels(self) -> pd.Series | None:
        return self.imageset.table["label"] if self.imageset.has_labels else None

    @property
    def splits(self) -> pd.Series | None:
        return self.imageset.table["split"] if self.imageset.has_splits else None

    def abspath(self, path: str) -> Path:
        return self.imageset.abspath(path)

    # -- artifacts ---------------------------------------------------------------------
    @property
    def decoded(self) -> DecodeOutput:
        if self._decoded is None:
            from .decode import run_decode_pass

            self._decoded = run_decode_pass(self.imageset, self.config, self.cache)
        return self._decoded

    @property
    def records(self) -> pd.DataFrame:
        return self.decoded.records

    @property
    def hashes(self) -> dict[str, np.ndarray]:
        return self.decoded.hashes

    def thumbnail(self, path: str) -> Image.Image | None:
        """The cached thumbnail of an image (None when unreadable)."""
        return self.decoded.thumbnail(path)

    @property
    def oof(self) -> OOF:
        if self._oof is None:
            from .training import compute_oof

            self._oof = compute_oof(self)
        return self._oof

    def artifact(self, name: str) -> Any:
        """Access an artifact by the name a check lists in ``requires``."""
        if name not in {"records", "hashes", "oof"}:
            raise KeyError(f"unknown context artifact {name!r}")
        return getattr(self, name)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
