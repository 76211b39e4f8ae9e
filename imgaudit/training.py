"""Out-of-fold predictions, embeddings and reusable fold models.

(Work in progress by engineer C: the :class:`OOF` interface below is final; the
training code lands next.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from .context import AuditContext

logger = logging.getLogger(__name__)

View = Callable[["Image.Image"], "Image.Image"]


@dataclass
class OOF:
    """Out-of-fold predictions of every readable, labeled image.

    Attributes
    ----------
    classes
        Sorted class names: the column order of ``probs``.
    labels
        ``int`` (N,): index of each image's given label in ``classes``; -1 where the
        image is unlabeled or unreadable.
    mask
        ``bool`` (N,): rows that got an out-of-fold prediction.
    folds
        ``int`` (N,): the fold each image was held out in; -1 where masked.
    probs
        ``float`` (N, K): out-of-fold predicted probabilities; NaN where masked.
    embeddings
        (N, D) features of every readable image (NaN rows where unreadable), or None.
    mode
        ``"fast"``, ``"finetune"`` or ``"user"`` (user-supplied ``pred_probs``).
    train_transforms
        Augmentations the fold models were trained with. Never a rotation or a flip:
        the rotation probe measures exactly those on models that never saw them.
    info
        JSON-serialisable facts about the run (architecture, size, epochs, timing...).
    """

    classes: list[str]
    labels: np.ndarray
    mask: np.ndarray
    folds: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray | None
    mode: Literal["fast", "finetune", "user"]
    train_transforms: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    _predictor: Any = field(default=None, repr=False)

    def predict_views(
        self, views: dict[str, View], progress: bool = True
    ) -> dict[str, np.ndarray]:
        """Out-of-fold probabilities of every image under each view.

        Parameters
        ----------
        views
            ``{name: f}`` where ``f`` maps a PIL image (RGB, as displayed) to a PIL
            image; it is applied before the model's usual preprocessing (resize,
            normalisation).
        progress
            Show a progress bar.

        Returns
        -------
        dict
            ``{name: float array (N, K)}``; each image is predicted by the fold model
            that never trained on it; NaN rows where ``mask`` is False.

        Raises
        ------
        NotImplementedError
            In ``"user"`` mode: there are no models to re-run.
        """
        if self.mode == "user" or self._predictor is None:
            raise NotImplementedError(
                "predict_views needs imgaudit's own fold models; user-supplied pred_probs have none"
            )
        return self._predictor.predict_views(self, views, progress)


def compute_oof(ctx: AuditContext) -> OOF:
    """Compute (or restore from the cache) the out-of-fold predictions of ``ctx``."""
    raise NotImplementedError("being written")
