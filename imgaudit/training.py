"""Out-of-fold predictions, embeddings and reusable fold models.

Every readable, labeled image gets exactly one predicted probability vector from a
model that never saw it during training (K-fold cross-fitting). Two ways to get
there, chosen by ``AuditConfig.label_mode``:

``"finetune"``
    K fastai ``vision_learner`` fits (ImageNet weights when available; one frozen
    epoch, then ``epochs`` unfrozen at one learning rate for body and head, see
    ``FINETUNE_LR_MULT``), by default averaged with the fast heads below (fitted on
    the same folds from the frozen features that this mode computes anyway for the
    embeddings; ``AuditConfig.finetune_ensemble``). It costs K full trainings: pick
    it for a final audit, with a GPU, or when the images look nothing like ImageNet
    photos (medical, satellite) and fast mode's frozen features separate the classes
    poorly. On CPU with small data its gain can be small (see ``docs/benchmarks.md``).
``"fast"`` (default)
    One forward pass of a frozen pretrained backbone gives multi-layer embeddings
    (pooled activations of several depths: the shallow ones transfer better to
    domain-shifted data than the last layer alone), then K scikit-learn
    logistic-regression heads give the probabilities; on low-resolution data (below
    ``FAST_MIN_SIZE``) the backbone also reads the images at a second scale
    (``FAST_EXTRA_SCALES``) with its own heads, and a further head reads the raw
    pixels (``FAST_PIXEL_MAX_SIZE``); the heads' probabilities are averaged. Typically
    5-20x quicker; pick it for a first look, big datasets, CPU-only machines, or
    photos close to ImageNet's domain.

Both modes make the same outputs (:class:`OOF`) and keep their fold models, so
:meth:`OOF.predict_views` can re-predict every image under other views (the
rotation probe). **The fold models are never trained with rotations or flips**
(neither horizontal nor vertical): a model trained with a transform is invariant
to it by construction and the probe could not measure it. The augmentations used
are listed in ``OOF.train_transforms``.

Folds are stratified by label and duplicate-aware: when a duplicates check ran
before (``ctx.outputs["exact_duplicates"]`` / ``["near_duplicates"]``), every
duplicate group stays inside one fold, so a copy cannot leak its label into its
own prediction.

Everything (probabilities, embeddings, folds and the fold models) is cached in the
audit cache, keyed by the image contents (``records.sha1``), labels, duplicate
groups and options: a second audit of the same data trains nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from .columns import extra_col

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .context import AuditContext

logger = logging.getLogger(__name__)

View = Callable[["Image.Image"], "Image.Image"]

#: bump when the outputs of a given configuration change (invalidates cached runs)
TRAINING_VERSION = 3

#: cache namespace of whole out-of-fold runs
CACHE_NS = "oof"

#: smallest and default-largest training image size (short side, pixels)
MIN_TRAIN_SIZE = 32
#: fast mode upsamples small images at least this far: frozen ImageNet filters
#: need objects at a scale they were trained on
FAST_MIN_SIZE = 64
#: fast mode: dimensions kept by the PCA that compresses the multi-layer features.
#: On ``benchmarks/labels.py`` (cached features, 64 + 96 px + pixel heads) 256 gave
#: label-score AUROC 0.9817 and OOF accuracy 0.891 vs 0.9805 / 0.886 with 128
FAST_PCA_DIMS = 256
#: fast mode: inverse L2 strength of the logistic-regression heads. Strong
#: regularisation gives better-calibrated probabilities, which is what cleanlab's
#: per-class thresholds need: on ``benchmarks/labels.py`` (Fashion-MNIST, 10% flips)
#: C=0.03/0.01/0.003/0.001 gave OOF accuracy 0.852/0.861/0.869/0.873 and
#: label-issue F1 0.66/0.69/0.72/0.72
FAST_C = 0.003
#: fast mode on low-resolution data (median short side below ``FAST_MIN_SIZE``, so
#: the backbone sees upsampled images): a second head on the raw pixels (the image
#: area-averaged to at most this side), whose probabilities are averaged with the
#: backbone head's. Frozen ImageNet filters miss detail that tiny grayscale images
#: carry in their pixels; the two heads err differently. Measured on
#: ``benchmarks/labels.py``: OOF accuracy 0.869 -> 0.882, F1 0.72 -> 0.755
FAST_PIXEL_MAX_SIZE = 32
#: inverse L2 strength of the pixel head (standardised RGB pixels)
FAST_PIXEL_C = 0.001
#: the pixel head reads the standardised pixels projected on their first principal
#: components (label-free, fitted on all readable images like the backbone PCA).
#: An L2-regularised linear head barely uses the low-variance directions anyway, and
#: grey images repeat each pixel in three channels: on ``benchmarks/labels.py``
#: (28 px, 2352 pixel values) 256 components gave the same label-score AUROC
#: (0.9776 vs 0.9777) with the five pixel-head fits ~7x quicker - they were most of
#: fast mode's time
FAST_PIXEL_PCA_DIMS = 256
#: fast mode on low-resolution data: the backbone also reads the images at these
#: multiples of its size, each scale with its own PCA and heads, all heads' probabilities
#: averaged. Upsampled from a few dozen pixels, an object's scale for the ImageNet
#: filters is arbitrary; two scales hedge (the 1.5x features cost ~2x the 1x ones).
#: Measured on ``benchmarks/labels.py`` (64 px + 96 px + pixel heads vs 64 px + pixel
#: heads): OOF accuracy 0.882 -> 0.886, label-score AUROC 0.978 -> 0.980
FAST_EXTRA_SCALES = (1.5,)
#: fine-tune mode: random zoom and lighting only (no rotation, no flip, no warp)
FINETUNE_MAX_ZOOM = 1.1
FINETUNE_MAX_LIGHTING = 0.2
#: fine-tune mode: ``Learner.fine_tune``'s ``lr_mult`` (body lr = head lr / lr_mult).
#: Our torchvision bodies form ONE parameter group, so fastai's default of 100 trains
#: the whole body at lr/200: fine on photos, but it cannot adapt to a new domain
#: (Fashion-MNIST: OOF accuracy 0.77 with 100 at 64 px, 0.85 with 1 at 32 px)
FINETUNE_LR_MULT = 1.0

#: duplicate checks whose groups must not be split across folds
DUPLICATE_CHECKS = ("exact_duplicates", "near_duplicates")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_warned_pretrained: set[str] = set()


# ---------------------------------------------------------------------------------------
# the result
# ---------------------------------------------------------------------------------------
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
        ``int`` (N,): the fold each image was held out in; -1 where masked (and
        everywhere in ``"user"`` mode, where the folds are unknown).
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

        Examples
        --------
        >>> from PIL import Image
        >>> views = {"rot180": lambda im: im.transpose(Image.Transpose.ROTATE_180)}
        >>> p = ctx.oof.predict_views(views)["rot180"]  # doctest: +SKIP
        """
        if self.mode == "user" or self._predictor is None:
            raise NotImplementedError(
                "predict_views needs imgaudit's own fold models; user-supplied pred_probs have none"
            )
        return self._predictor.predict_views(self, views, progress)

    def embed_views(
        self, views: dict[str, View], progress: bool = True
    ) -> dict[str, np.ndarray]:
        """Frozen-backbone features of every predicted image under each view.

        The features are :class:`FeatureExtractor`'s (the pretrained backbone of the
        run's architecture, never fine-tuned), in both modes: one feature space for all
        images and folds, for heads trained on the images themselves (the rotation
        probe's self-supervised orientation head).

        Parameters
        ----------
        views
            ``{name: f}``, PIL image -> PIL image, applied before resize/normalisation.
        progress
            Show a progress bar.

        Returns
        -------
        dict
            ``{name: float32 array (N, D)}``; NaN rows where ``mask`` is False.

        Raises
        ------
        NotImplementedError
            In ``"user"`` mode: there is no backbone.
        """
        if self.mode == "user" or self._predictor is None:
            raise NotImplementedError("embed_views needs imgaudit's own backbone; user mode has none")
        pred = self._predictor
        if callable(getattr(pred, "embed_views", None)):  # a predictor with its own features
            return pred.embed_views(self, views, progress)  # type: ignore[no-any-return]
        plan = getattr(pred, "plan", None)
        if plan is None:
            raise NotImplementedError("the fold models' predictor has no backbone to embed views with")
        # fast mode already holds the backbone that made its embeddings; build one otherwise
        ext = pred.extractor() if callable(getattr(pred, "extractor", None)) else None
        if ext is None:
            ext = getattr(pred, "_view_extractor", None)
            if ext is None:
                ext = FeatureExtractor(plan.arch, plan.pretrained, plan.seed)
                pred._view_extractor = ext
        size = max(plan.size, FAST_MIN_SIZE)
        names = list(views)
        positions = np.flatnonzero(self.mask)
        out: dict[str, np.ndarray] = {}
        batches = _iter_view_batches(
            pred.abspaths, positions, [views[v] for v in names], size, plan.max_pixels,
            plan.batch_size, plan.workers,
        )
        total = -(-len(positions) // plan.batch_size)
        for pos, x in _progress(batches, progress, total=total, desc="view features"):
            b, v = x.shape[:2]
            feats = ext(x.flatten(0, 1)).numpy().astype(np.float32).reshape(b, v, -1)
            for j, name in enumerate(names):
                if name not in out:
                    out[name] = np.full((len(self.mask), feats.shape[2]), np.nan, dtype=np.float32)
                out[name][pos] = feats[:, j]
        for name in names:
            out.setdefault(name, np.full((len(self.mask), 0), np.nan, dtype=np.float32))
        return out


# ---------------------------------------------------------------------------------------
# backbones (torchvision, ImageNet weights from the local torch hub cache only)
# ---------------------------------------------------------------------------------------
def _weights_enum(arch: str) -> Any | None:
    """The ImageNet weights torchvision would use for ``arch``: a checkpoint already in
    the torch hub cache (DEFAULT first, then older versions), else DEFAULT."""
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError, AttributeError):
        return None
    candidates = [enum.DEFAULT, *[w for w in enum if w is not enum.DEFAULT]]
    for w in candidates:
        if _checkpoint_path(w).is_file():
            return w
    return enum.DEFAULT


def _checkpoint_path(weights: Any) -> Path:
    """Where the torch hub cache keeps the checkpoint of a torchvision weights enum."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def weights_path(arch: str) -> Path | None:
    """Where torchvision looks for ``arch``'s ImageNet checkpoint (torch hub cache)."""
    w = _weights_enum(arch)
    return None if w is None else _checkpoint_path(w)


def resolve_pretrained(arch: str, pretrained: bool | Literal["auto"]) -> bool:
    """Decide whether ImageNet weights are used.

    ``"auto"`` uses them only when the checkpoint is already in the torch hub cache
    (imgaudit never downloads); otherwise it warns once per architecture and the
    models train from scratch. ``True`` insists (torchvision may then download).
    """
    if pretrained != "auto":
        return bool(pretrained)
    path = weights_path(arch)
    if path is not None and path.is_file():
        return True
    if arch not in _warned_pretrained:
        _warned_pretrained.add(arch)
        where = f" (looked for {path})" if path is not None else ""
        warnings.warn(
            f"imgaudit: no ImageNet weights for {arch!r} in the torch hub cache{where}; "
            "training from scratch, which needs more epochs and gives weaker label-issue "
            "detection. Put the checkpoint there (or set TORCH_HOME) to use pretrained weights.",
            UserWarning,
            stacklevel=3,
        )
    return False


def build_torchvision(arch: str, pretrained: bool) -> torch.nn.Module:
    """A torchvision classification model, with ImageNet weights when ``pretrained``."""
    import torchvision

    weights = _weights_enum(arch) if pretrained else None
    if pretrained and weights is None:
        raise ValueError(f"torchvision has no pretrained weights for {arch!r}")
    return torchvision.models.get_model(arch, weights=weights)


def body_of(model: torch.nn.Module) -> torch.nn.Sequential:
    """The convolutional body (everything before global pooling) of a torchvision model."""
    import torch.nn as nn

    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential):
        return features
    children = list(model.named_children())
    names = [n for n, _ in children]
    if "avgpool" in names:  # ResNet / RegNet style: stem, stages, avgpool, fc
        return nn.Sequential(*[m for _, m in children[: names.index("avgpool")]])
    raise ValueError(
        f"cannot find the convolutional body of {type(model).__name__}; use a ResNet, "
        "MobileNet, EfficientNet, ConvNeXt, DenseNet, VGG or similar torchvision arch"
    )


class _Prebuilt:
    """A fastai ``arch`` callable that returns a model built beforehand.

    fastai's ``vision_learner`` calls ``arch(pretrained=...)``; we build the model
    ourselves so that "auto" never downloads and any torchvision arch works. The
    model is handed over as ``Sequential(body, pool)``: fastai cuts at the last
    pooling child, which leaves exactly our :func:`body_of`.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        import torch.nn as nn

        self.model = nn.Sequential(body_of(model), nn.AdaptiveAvgPool2d(1))

    def __call__(self, *args: Any, **kwargs: Any) -> torch.nn.Module:
        return self.model


def _device() -> torch.device:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------------------
# image batches (the one loader, a view, resize, normalise)
# ---------------------------------------------------------------------------------------
class _ViewDataset:
    """Items: positions; returns a (V, 3, S, S) float tensor of the views of one image."""

    def __init__(
        self, paths: Sequence[str], positions: np.ndarray, views: Sequence[View], size: int,
        max_pixels: int,
    ) -> None:
        self.paths = list(paths)
        self.positions = positions
        self.views = list(views)
        self.size = size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> torch.Tensor:
        import torch
        from PIL import Image as PILImage

        from .imaging import load_rgb

        img = load_rgb(self.paths[self.positions[i]], max_pixels=self.max_pixels, decode_size=self.size)
        out = []
        for view in self.views:
            v = view(img).convert("RGB").resize((self.size, self.size), PILImage.Resampling.BILINEAR)
            out.append(torch.from_numpy(np.asarray(v, dtype=np.uint8).copy()).permute(2, 0, 1))
        return torch.stack(out)


def _iter_view_batches(
    paths: Sequence[str], positions: np.ndarray, views: Sequence[View], size: int, max_pixels: int,
    batch_size: int, workers: int,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield (positions, normalised float tensor (B, V, 3, S, S)) batches."""
    import torch

    ds = _ViewDataset(paths, positions, views, size, max_pixels)
    dl: Any = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)  # type: ignore[arg-type]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    start = 0
    for batch in dl:
        x = (batch.float() / 255.0 - mean) / std
        yield positions[start : start + len(batch)], x
        start += len(batch)


def _progress(iterable: Any, enabled: bool, **kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled, leave=False, **kwargs)


# ---------------------------------------------------------------------------------------
# fast mode: frozen multi-layer features -> PCA -> K-fold logistic regression
# ---------------------------------------------------------------------------------------
class FeatureExtractor:
    """Frozen backbone; pooled activations of the deeper two thirds of its stages.

    Each stage contributes its global average; stages where the resolution drops
    next also contribute a 2x2 average grid (coarse layout: where the sleeves are).
    """

    def __init__(self, arch: str, pretrained: bool, seed: int = 0) -> None:
        import torch

        self.arch = arch
        self.pretrained = pretrained
        # without ImageNet weights the features are those of a random network: seed
        # it, so that cached heads and a later predict_views see the same network
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_torchvision(arch, pretrained)
        self.body = body_of(model).eval()
        self.device = _device()
        self.body.to(self.device)
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.first_tap = len(self.body) // 3
        self._grid_taps: set[int] | None = None
        self._torch = torch

    def _find_grid_taps(self, x: torch.Tensor) -> set[int]:
        sizes = []
        for m in self.body:
            x = m(x)
            sizes.append(x.shape[-1])
        return {
            i for i in range(self.first_tap, len(sizes) - 1)
            if sizes[i + 1] < sizes[i] and sizes[i] >= 2
        }

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised images -> (B, D) features."""
        torch = self._torch
        with torch.inference_mode():
            x = x.to(self.device)
            if self._grid_taps is None:
                self._grid_taps = self._find_grid_taps(x[:1])
            outs = []
            for i, m in enumerate(self.body):
                x = m(x)
                if i >= self.first_tap:
                    outs.append(x.mean(dim=(2, 3)))
                    if i in self._grid_taps:
                        outs.append(torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1))
            return torch.cat(outs, dim=1).float().cpu()


@dataclass
class _FastHeads:
    """Standardise + PCA (fitted on all readable images, label-free) and K linear heads."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (d, D)
    pca_mean: np.ndarray
    coef: list[np.ndarray]  # per fold (k_f, d)
    intercept: list[np.ndarray]
    class_idx: list[np.ndarray]  # per fold: which of the K classes the head knows
    # the pixel head (low-resolution data only, see FAST_PIXEL_MAX_SIZE): its own
    # standardisation and per-fold linear heads over the same classes
    pix_mean: np.ndarray | None = None
    pix_scale: np.ndarray | None = None
    pix_coef: list[np.ndarray] = field(default_factory=list)
    pix_intercept: list[np.ndarray] = field(default_factory=list)
    # the pixel PCA (FAST_PIXEL_PCA_DIMS): (d, P) components and their mean
    pix_components: np.ndarray | None = None
    pix_pca_mean: np.ndarray | None = None
    # one head set (own standardisation, PCA, per-fold heads) per extra backbone
    # scale (FAST_EXTRA_SCALES); they read raw backbone features at that scale
    extra: list[_FastHeads] = field(default_factory=list)

    def embed(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.mean) / self.scale
        return (z - self.pca_mean) @ self.components.T

    @property
    def has_pixels(self) -> bool:
        return self.pix_mean is not None and len(self.pix_coef) > 0

    @property
    def n_heads(self) -> int:
        """How many heads' probabilities :meth:`probs` averages."""
        return 1 + int(self.has_pixels) + len(self.extra)

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel features -> the pixel head's inputs (standardised, PCA-projected)."""
        assert self.pix_mean is not None and self.pix_scale is not None
        z = (pixels - self.pix_mean) / self.pix_scale
        if self.pix_components is not None and self.pix_pca_mean is not None:
            z = (z - self.pix_pca_mean) @ self.pix_components.T
        return z

    @staticmethod
    def _softmax(logits: np.ndarray, idx: np.ndarray, n_classes: int) -> np.ndarray:
        p = np.zeros((len(logits), n_classes))
        if len(idx) == 1:  # a degenerate fold that saw one class
            p[:, idx[0]] = 1.0
            return p
        if logits.shape[1] == 1:  # sklearn binary head: one logit for class_idx[1]
            logits = np.hstack([np.zeros_like(logits), logits])
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        p[:, idx] = e / e.sum(axis=1, keepdims=True)
        return p

    def probs(
        self, fold: int, emb: np.ndarray, n_classes: int, pixels: np.ndarray | None = None,
        extra: Sequence[np.ndarray] = (),
    ) -> np.ndarray:
        """The fold's probabilities: the mean over the backbone head, the pixel head
        (when there is one and ``pixels`` are given) and the extra-scale heads (whose
        raw backbone features ``extra`` holds, one array per scale)."""
        p = self._softmax(emb @ self.coef[fold].T + self.intercept[fold], self.class_idx[fold], n_classes)
        n = 1
        if pixels is not None and self.has_pixels:
            logits = self.embed_pixels(pixels) @ self.pix_coef[fold].T + self.pix_intercept[fold]
            p = p + self._softmax(logits, self.class_idx[fold], n_classes)
            n += 1
        for sub, raw in zip(self.extra, extra, strict=False):
            p = p + sub.probs(fold, sub.embed(raw), n_classes)
            n += 1
        return p / n

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {
            "mean": self.mean, "scale": self.scale, "components": self.components,
            "pca_mean": self.pca_mean,
        }
        for f, (c, b, k) in enumerate(zip(self.coef, self.intercept, self.class_idx, strict=True)):
            arrays[f"coef{f}"], arrays[f"intercept{f}"], arrays[f"class_idx{f}"] = c, b, k
        if self.has_pixels:
            assert self.pix_mean is not None and self.pix_scale is not None
            arrays["pix_mean"], arrays["pix_scale"] = self.pix_mean, self.pix_scale
            if self.pix_components is not None and self.pix_pca_mean is not None:
                arrays["pix_components"] = self.pix_components
                arrays["pix_pca_mean"] = self.pix_pca_mean
            for f, (c, b) in enumerate(zip(self.pix_coef, self.pix_intercept, strict=True)):
                arrays[f"pix_coef{f}"], arrays[f"pix_intercept{f}"] = c, b
        for i, sub in enumerate(self.extra):
            arrays[f"extra{i}"] = np.frombuffer(sub.to_bytes(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, n_folds=np.array(len(self.coef)), **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> _FastHeads:
        z = np.load(io.BytesIO(data))
        n = int(z["n_folds"])
        heads = cls(
            z["mean"], z["scale"], z["components"], z["pca_mean"],
            [z[f"coef{f}"] for f in range(n)], [z[f"intercept{f}"] for f in range(n)],
            [z[f"class_idx{f}"] for f in range(n)],
        )
        if "pix_mean" in z.files:
            heads.pix_mean, heads.pix_scale = z["pix_mean"], z["pix_scale"]
            heads.pix_coef = [z[f"pix_coef{f}"] for f in range(n)]
            heads.pix_intercept = [z[f"pix_intercept{f}"] for f in range(n)]
            if "pix_components" in z.files:
                heads.pix_components, heads.pix_pca_mean = z["pix_components"], z["pix_pca_mean"]
        i = 0
        while f"extra{i}" in z.files:
            heads.extra.append(cls.from_bytes(z[f"extra{i}"].tobytes()))
            i += 1
        return heads


# ---------------------------------------------------------------------------------------
# predictors: re-run the fold models under views
# ---------------------------------------------------------------------------------------
class _Predictor:
    def __init__(
        self, plan: _Plan, abspaths: list[str], extractor: FeatureExtractor | None = None
    ) -> None:
        self.plan = plan
        self.abspaths = abspaths
        # the frozen backbone (fast heads' features, OOF.embed_views): the one that made
        # this run's embeddings when there is one, else built on first use (a cache restore)
        self._extractor = extractor

    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = FeatureExtractor(self.plan.arch, self.plan.pretrained, self.plan.seed)
        return self._extractor

    def _extra_streams(
        self, positions: np.ndarray, views: list[View], base: int
    ) -> list[Iterator[tuple[np.ndarray, torch.Tensor]]]:
        """Batches of the same images at each extra fast-head scale, aligned with the
        main stream of size ``base`` (same positions, same batch size)."""
        return [
            _iter_view_batches(
                self.abspaths, positions, views, s, self.plan.max_pixels, self.plan.batch_size,
                self.plan.workers,
            )
            for s in extra_sizes(self.plan, base)
        ]

    def _extra_features(
        self, streams: list[Iterator[tuple[np.ndarray, torch.Tensor]]]
    ) -> list[np.ndarray]:
        """The next batch of each extra-scale stream -> raw features (B, V, D)."""
        out = []
        for stream in streams:
            _, x = next(stream)
            b, v = x.shape[:2]
            out.append(self.extractor()(x.flatten(0, 1)).numpy().astype(np.float64).reshape(b, v, -1))
        return out

    def predict_views(
        self, oof: OOF, views: dict[str, View], progress: bool
    ) -> dict[str, np.ndarray]:
        n, k = oof.probs.shape
        names = list(views)
        out = {name: np.full((n, k), np.nan) for name in names}
        if not names:
            return out
        for pos, p in self._predict(oof, [views[v] for v in names], progress):
            for j, name in enumerate(names):
                out[name][pos] = p[:, j]
        return out

    def _predict(
        self, oof: OOF, views: list[View], progress: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (positions, probs (B, V, K))."""
        raise NotImplementedError


class _FastPredictor(_Predictor):
    def __init__(
        self, plan: _Plan, abspaths: list[str], heads: _FastHeads,
        extractor: FeatureExtractor | None = None,
    ) -> None:
        super().__init__(plan, abspaths, extractor)
        self.heads = heads

    def _predict(
        self, oof: OOF, views: list[View], progress: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        positions = np.flatnonzero(oof.mask)
        ext = self.extractor()
        k = len(oof.classes)
        batches = _iter_view_batches(
            self.abspaths, positions, views, self.plan.size, self.plan.max_pixels,
            self.plan.batch_size, self.plan.workers,
        )
        extra = self._extra_streams(positions, views, self.plan.size) if self.heads.extra else []
        total = -(-len(positions) // self.plan.batch_size)
        for pos, x in _progress(batches, progress, total=total, desc="views"):
            b, v = x.shape[:2]
            flat = x.flatten(0, 1)
            emb = self.heads.embed(ext(flat).numpy().astype(np.float64))
            emb = emb.reshape(b, v, -1)
            pix = None
            if self.plan.pixel_size and self.heads.has_pixels:
                pix = pixel_features(flat, self.plan.pixel_size).reshape(b, v, -1)
            xraw = self._extra_features(extra)
            p = np.empty((b, v, k))
            for f in np.unique(oof.folds[pos]):
                rows = oof.folds[pos] == f
                for j in range(v):
                    rpix = pix[rows, j] if pix is not None else None
                    p[rows, j] = self.heads.probs(
                        int(f), emb[rows, j], k, rpix, [r[rows, j] for r in xraw]
                    )
            yield pos, p


class _FinetunePredictor(_Predictor):
    """The fine-tuned fold models; with ``heads`` (``plan.ensemble``), each view's
    probabilities are averaged with the fast heads' exactly as ``OOF.probs`` were."""

    def __init__(
        self, plan: _Plan, abspaths: list[str], states: list[bytes], n_classes: int,
        heads: _FastHeads | None = None,
    ) -> None:
        super().__init__(plan, abspaths)
        self.states = states
        self.n_classes = n_classes
        self.heads = heads

    def _fast_probs(
        self, fold: int, x: torch.Tensor, k: int, extra: list[np.ndarray]
    ) -> np.ndarray:
        """(B, V, K) fast-head probabilities of a (B, V, 3, S, S) batch; ``extra``: its
        raw features (B, V, D) at each extra scale."""
        assert self.heads is not None
        b, v = x.shape[:2]
        flat = x.flatten(0, 1)
        emb = self.heads.embed(self.extractor()(flat).numpy().astype(np.float64))
        pix = pixel_features(flat, self.plan.pixel_size) if self.plan.pixel_size else None
        xraw = [r.reshape(b * v, -1) for r in extra]
        return self.heads.probs(fold, emb, k, pix, xraw).reshape(b, v, k)

    def model(self, fold: int) -> torch.nn.Module:
        import torch
        from fastai.vision.learner import create_vision_model

        net = create_vision_model(
            _Prebuilt(build_torchvision(self.plan.arch, False)), self.n_classes,
            pretrained=False,
        )
        state = torch.load(io.BytesIO(self.states[fold]), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        return net.to(_device()).eval()

    def _predict(
        self, oof: OOF, views: list[View], progress: bool
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        import torch

        dev = _device()
        for f in _progress(range(len(self.states)), progress, desc="fold models"):
            positions = np.flatnonzero(oof.mask & (oof.folds == f))
            if not len(positions):
                continue
            net = self.model(f)
            batches = _iter_view_batches(
                self.abspaths, positions, views, self.plan.size, self.plan.max_pixels,
                self.plan.batch_size, self.plan.workers,
            )
            # the fast heads read the images at their own size: a second, aligned stream
            fast_batches: Iterator[Any] = iter(())
            extra: list[Iterator[tuple[np.ndarray, torch.Tensor]]] = []
            fast_size = max(self.plan.size, FAST_MIN_SIZE)
            if self.heads is not None:
                fast_batches = _iter_view_batches(
                    self.abspaths, positions, views, fast_size,
                    self.plan.max_pixels, self.plan.batch_size, self.plan.workers,
                )
                if self.heads.extra:
                    extra = self._extra_streams(positions, views, fast_size)
            with torch.inference_mode():
                for pos, x in batches:
                    b, v = x.shape[:2]
                    logits = net(x.flatten(0, 1).to(dev)).float()
                    p = torch.softmax(logits, dim=1).cpu().numpy().reshape(b, v, -1)
                    if self.heads is not None:
                        _, xf = next(fast_batches)
                        w = 1.0 / (1 + self.heads.n_heads)
                        fp = self._fast_probs(f, xf, p.shape[2], self._extra_features(extra))
                        p = w * p + (1.0 - w) * fp
                    yield pos, p


# ---------------------------------------------------------------------------------------
# plan: the resolved options of one run
# ---------------------------------------------------------------------------------------
@dataclass
class _Plan:
    mode: Literal["fast", "finetune"]
    arch: str
    pretrained: bool
    size: int
    n_folds: int
    epochs: int
    batch_size: int
    lr: float | None
    seed: int
    workers: int
    max_pixels: int
    progress: bool
    #: side of the fast heads' pixel features; 0: no pixel head (FAST_PIXEL_MAX_SIZE)
    pixel_size: int = 0
    #: finetune mode: average the CNN's probabilities with the fast heads'
    ensemble: bool = True
    #: extra backbone scales of the fast heads, multiples of their size (low-resolution
    #: data only, see FAST_EXTRA_SCALES)
    scales: tuple[float, ...] = ()

    def key_parts(self) -> tuple[Any, ...]:
        # workers and progress do not change results
        return (
            TRAINING_VERSION, self.mode, self.arch, self.pretrained, self.size, self.n_folds,
            self.epochs, self.batch_size, self.lr, self.seed, self.pixel_size, self.ensemble,
            self.scales,
            FAST_MIN_SIZE, FAST_PCA_DIMS, FAST_C, FAST_PIXEL_C, FAST_PIXEL_PCA_DIMS, FINETUNE_MAX_ZOOM,
            FINETUNE_MAX_LIGHTING, FINETUNE_LR_MULT,
        )

    def train_transforms(self) -> list[str]:
        resize = f"Resize({self.size}, method=squish)"
        if self.mode == "fast":
            return [resize]
        return [resize, f"zoom(max_zoom={FINETUNE_MAX_ZOOM})",
                f"lighting(max_lighting={FINETUNE_MAX_LIGHTING})"]


def extra_sizes(plan: _Plan, base: int) -> list[int]:
    """Image sizes of the extra fast-head scales when the main one is ``base``."""
    return [int(round(base * s)) for s in plan.scales]


def default_size(records: pd.DataFrame, ok: np.ndarray, max_size: int, min_size: int) -> int:
    """Median short side of the readable images, clamped to ``[min_size, max_size]``."""
    if ok.any() and "width" in records and "height" in records:
        short = np.minimum(
            records["width"].to_numpy(dtype=float)[ok], records["height"].to_numpy(dtype=float)[ok]
        )
        short = short[np.isfinite(short)]
        med = float(np.median(short)) if len(short) else float(max_size)
    else:
        med = float(max_size)
    return int(min(max(round(med), min_size), max(max_size, min_size)))


def make_plan(ctx: AuditContext, ok: np.ndarray) -> _Plan:
    cfg = ctx.config
    mode = cfg.label_mode
    min_size = FAST_MIN_SIZE if mode == "fast" else MIN_TRAIN_SIZE
    size = cfg.train_size or default_size(ctx.records, ok, cfg.size, min_size)
    # low-resolution data (the backbone sees it upsampled): add the pixel head
    native = default_size(ctx.records, ok, cfg.size, 1)
    low_res = native < FAST_MIN_SIZE
    pixel_size = min(native, FAST_PIXEL_MAX_SIZE) if low_res else 0
    return _Plan(
        mode=mode, arch=cfg.arch, pretrained=resolve_pretrained(cfg.arch, cfg.pretrained),
        size=int(size), n_folds=int(cfg.n_folds), epochs=int(cfg.epochs),
        batch_size=int(cfg.batch_size), lr=cfg.lr, seed=int(cfg.seed), workers=cfg.workers(),
        max_pixels=int(cfg.max_pixels), progress=bool(cfg.progress), pixel_size=int(pixel_size),
        ensemble=bool(cfg.finetune_ensemble), scales=FAST_EXTRA_SCALES if low_res else (),
    )


# ---------------------------------------------------------------------------------------
# folds
# ---------------------------------------------------------------------------------------
def duplicate_groups(ctx: AuditContext) -> np.ndarray:
    """Group id per image (N,): images of one duplicate group share an id.

    Merges the groups of every duplicates check that ran (union-find, so an exact
    copy of a near duplicate joins both); images in no group get their own id.
    """
    n = len(ctx.paths)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    for check in DUPLICATE_CHECKS:
        df = ctx.outputs.get(check)
        col = extra_col(check, "group")
        if df is None or col not in df:
            continue
        g = df[col].reindex(ctx.paths)
        valid = np.array(g.notna().to_numpy(), dtype=bool)
        gv = g.to_numpy()
        if valid.any() and pd.api.types.is_numeric_dtype(g):
            valid &= pd.to_numeric(g, errors="coerce").fillna(-1).to_numpy() >= 0
        first: dict[Any, int] = {}
        for i in np.flatnonzero(valid):
            key = gv[i]
            if key in first:
                a, b = find(int(i)), find(int(first[key]))
                if a != b:
                    parent[a] = b
            else:
                first[key] = int(i)
    return np.array([find(i) for i in range(n)])


def make_folds(
    labels: np.ndarray, mask: np.ndarray, groups: np.ndarray, n_folds: int, seed: int
) -> np.ndarray:
    """Stratified, group-aware fold id per row (-1 where ``mask`` is False)."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = np.full(len(labels), -1, dtype=int)
    idx = np.flatnonzero(mask)
    n_groups = len(np.unique(groups[idx]))
    k = min(n_folds, n_groups)
    if k < 2:
        raise ValueError("need at least 2 independent labeled images for out-of-fold predictions")
    if k < n_folds:
        logger.info("only %d independent labeled images: using %d folds", n_groups, k)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # rare classes (fewer members than folds) are expected in audits
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        for f, (_, test) in enumerate(splitter.split(idx, labels[idx], groups[idx])):
            folds[idx[test]] = f
    return folds


# ---------------------------------------------------------------------------------------
# caching
# ---------------------------------------------------------------------------------------
def _run_key(plan: _Plan, sha1: np.ndarray, labels: np.ndarray, groups: np.ndarray,
             mask: np.ndarray, classes: list[str]) -> str:
    h = hashlib.sha1()
    h.update(repr(plan.key_parts()).encode())
    h.update(repr(classes).encode())
    # groups canonicalised to first-occurrence order, so ids don't matter, only the partition
    _, canon = np.unique(groups, return_inverse=True)
    order = {g: i for i, g in enumerate(dict.fromkeys(canon.tolist()))}
    for s, lab, g, m in zip(sha1, labels, canon, mask, strict=True):
        h.update(f"{s}|{lab}|{order[g]}|{int(m)};".encode())
    return h.hexdigest()


def _pack(arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes]) -> bytes:
    import json

    buf = io.BytesIO()
    extra = {f"blob_{k}": np.frombuffer(v, dtype=np.uint8) for k, v in blobs.items()}
    np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays, **extra)  # type: ignore[arg-type]
    return buf.getvalue()


def _unpack(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
    import json

    z = np.load(io.BytesIO(data), allow_pickle=False)
    meta = json.loads(z["meta"].tobytes().decode())
    arrays = {k: z[k] for k in z.files if k != "meta" and not k.startswith("blob_")}
    blobs = {k[5:]: z[k].tobytes() for k in z.files if k.startswith("blob_")}
    return arrays, meta, blobs


# ---------------------------------------------------------------------------------------
# the entry point
# ---------------------------------------------------------------------------------------
def encode_labels(ctx: AuditContext) -> tuple[list[str], np.ndarray]:
    """Sorted classes and the label index per image (-1 where unlabeled)."""
    classes = [str(c) for c in ctx.imageset.classes] if ctx.imageset.has_labels else []
    if ctx.labels is None or not classes:
        return classes, np.full(len(ctx.paths), -1, dtype=int)
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.array(
        [lookup.get(str(v), -1) if v is not None and not pd.isna(v) else -1 for v in ctx.labels],
        dtype=int,
    )
    return classes, labels


def _user_oof(ctx: AuditContext, classes: list[str], labels: np.ndarray, ok: np.ndarray) -> OOF:
    cfg = ctx.config
    n = len(ctx.paths)
    probs = np.asarray(cfg.pred_probs, dtype=float)
    if probs.ndim != 2 or probs.shape[0] != n:
        raise ValueError(f"pred_probs must have shape (n_images={n}, n_classes), got {probs.shape}")
    if classes and probs.shape[1] != len(classes):
        raise ValueError(
            f"pred_probs has {probs.shape[1]} columns but the labels have {len(classes)} "
            f"classes {classes} (columns must follow this sorted order)"
        )
    finite = np.isfinite(probs).all(axis=1)
    mask = ok & (labels >= 0) & finite
    probs = probs.copy()
    probs[~mask] = np.nan
    emb = None
    if cfg.features is not None:
        emb = np.asarray(cfg.features, dtype=float)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(f"features must have shape (n_images={n}, dim), got {emb.shape}")
        emb = emb.copy()
        emb[~ok] = np.nan
    return OOF(
        classes=classes, labels=np.where(ok, labels, -1), mask=mask,
        folds=np.full(n, -1, dtype=int), probs=probs, embeddings=emb, mode="user",
        train_transforms=[], info={"mode": "user"},
    )


def compute_oof(ctx: AuditContext) -> OOF:
    """Out-of-fold probabilities, embeddings and fold models of ``ctx``'s images.

    Only readable (``ctx.records.ok``), labeled images take part. Options come
    from ``ctx.config`` (``label_mode``, ``n_folds``, ``arch``, ``train_size``,
    ``epochs``, ``batch_size``, ``lr``, ``pretrained``, ``pred_probs``, ``features``,
    ``seed``, ``num_workers``, ``progress``). The fold models are never trained with
    rotations or flips (see the module docstring). When fewer than two classes are
    labeled, no probabilities are made (``mask`` is all False) but the embeddings
    still are (the outlier check reads them).

    Returns
    -------
    OOF

    Examples
    --------
    >>> from imgaudit.config import AuditConfig
    >>> from imgaudit.context import AuditContext
    >>> from imgaudit.imageset import load_images
    >>> ctx = AuditContext(load_images("data/"), AuditConfig(label_mode="fast"))  # doctest: +SKIP
    >>> oof = compute_oof(ctx)  # doctest: +SKIP
    >>> oof.probs.shape  # doctest: +SKIP
    (1200, 10)
    """
    classes, labels = encode_labels(ctx)
    ok = ctx.records["ok"].reindex(ctx.paths).fillna(False).to_numpy(dtype=bool)
    if ctx.config.pred_probs is not None:
        return _user_oof(ctx, classes, labels, ok)

    labels = np.where(ok, labels, -1)
    n, k = len(ctx.paths), len(classes)
    mask = labels >= 0
    if len(np.unique(labels[mask])) < 2:
        mask = np.zeros(n, dtype=bool)
    plan = make_plan(ctx, ok)
    groups = duplicate_groups(ctx)
    folds = make_folds(labels, mask, groups, plan.n_folds, plan.seed) if mask.any() else np.full(n, -1)
    sha1 = ctx.records["sha1"].reindex(ctx.paths).astype(str).to_numpy()
    key = _run_key(plan, sha1, labels, groups, mask, classes)
    abspaths = [str(ctx.abspath(p)) for p in ctx.paths]

    cached = ctx.cache.get(CACHE_NS, key) if ctx.cache is not None else None
    if cached is not None:
        logger.info("out-of-fold predictions restored from the cache (%s mode)", plan.mode)
        arrays, meta, blobs = _unpack(cached)
        return _assemble(plan, abspaths, classes, labels, arrays, meta, blobs, cached=True)

    t0 = time.perf_counter()
    extractor: FeatureExtractor | None = None
    if plan.mode == "fast":
        extractor = FeatureExtractor(plan.arch, plan.pretrained, plan.seed)
        arrays, meta, blobs = _run_fast(plan, abspaths, labels, mask, folds, ok, k, extractor)
    else:
        arrays, meta, blobs = _run_finetune(plan, abspaths, labels, mask, folds, ok, classes)
    meta["seconds"] = round(time.perf_counter() - t0, 3)
    if ctx.cache is not None:
        ctx.cache.put(CACHE_NS, key, _pack(arrays, meta, blobs))
    return _assemble(
        plan, abspaths, classes, labels, arrays, meta, blobs, cached=False, extractor=extractor
    )


def _assemble(
    plan: _Plan, abspaths: list[str], classes: list[str], labels: np.ndarray,
    arrays: dict[str, np.ndarray], meta: dict[str, Any], blobs: dict[str, bytes], cached: bool,
    extractor: FeatureExtractor | None = None,
) -> OOF:
    mask = arrays["mask"].astype(bool)
    predictor: _Predictor | None = None
    if plan.mode == "fast" and "heads" in blobs:
        predictor = _FastPredictor(plan, abspaths, _FastHeads.from_bytes(blobs["heads"]), extractor)
    elif plan.mode == "finetune" and mask.any():
        states = [blobs[f"fold{f}"] for f in range(int(meta["n_folds"]))]
        heads = _FastHeads.from_bytes(blobs["heads"]) if "heads" in blobs else None
        predictor = _FinetunePredictor(plan, abspaths, states, len(classes), heads)
    emb = arrays.get("embeddings")
    info = {
        "mode": plan.mode, "arch": plan.arch, "pretrained": plan.pretrained, "size": plan.size,
        "n_folds": int(meta.get("n_folds", 0)), "epochs": plan.epochs if plan.mode == "finetune" else None,
        "lr": meta.get("lr"), "seconds": meta.get("seconds"), "cached": cached,
        "n_predicted": int(mask.sum()), "pixel_head": plan.pixel_size or None,
        "extra_scales": list(plan.scales) or None,
        "ensemble_heads": meta.get("ensemble_heads"),
    }
    return OOF(
        classes=classes, labels=labels, mask=mask, folds=arrays["folds"].astype(int),
        probs=arrays["probs"], embeddings=emb if emb is not None and emb.size else None,
        mode=plan.mode, train_transforms=plan.train_transforms(), info=info, _predictor=predictor,
    )


def _identity(img: Image.Image) -> Image.Image:
    return img


def pixel_features(x: torch.Tensor, size: int) -> np.ndarray:
    """(B, 3, S, S) normalised images -> (B, 3*size*size) area-averaged pixels.

    The images reach the backbone upsampled from their native size; averaging back
    down to (at most) that size recovers the original pixels, up to interpolation.
    """
    import torch.nn.functional as F

    return F.adaptive_avg_pool2d(x, size).flatten(1).numpy().astype(np.float32)


def _extract(
    plan: _Plan, abspaths: list[str], positions: np.ndarray, extractor: FeatureExtractor,
    desc: str,
) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
    """Backbone features, (when ``plan.pixel_size``) pixel features, and the backbone
    features at each extra scale (``plan.scales``) of ``positions``."""
    extra = []
    for s in extra_sizes(plan, plan.size):
        big = dataclasses.replace(plan, size=s, pixel_size=0, scales=())
        extra.append(_extract(big, abspaths, positions, extractor, f"{desc} ({s} px)")[0])
    chunks: list[np.ndarray] = []
    pix: list[np.ndarray] = []
    batches = _iter_view_batches(
        abspaths, positions, [_identity], plan.size, plan.max_pixels, plan.batch_size, plan.workers
    )
    total = -(-len(positions) // plan.batch_size)
    for _, x in _progress(batches, plan.progress, total=total, desc=desc):
        chunks.append(extractor(x[:, 0]).numpy())
        if plan.pixel_size:
            pix.append(pixel_features(x[:, 0], plan.pixel_size))
    raw = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)
    return raw, (np.concatenate(pix) if pix else None), extra


def _fit_heads(
    raw: np.ndarray, rows_of_raw: np.ndarray, labels: np.ndarray, mask: np.ndarray,
    folds: np.ndarray, n_folds: int, seed: int, progress: bool,
    pixels: np.ndarray | None = None, extra: Sequence[np.ndarray] = (),
) -> tuple[_FastHeads, np.ndarray]:
    """Standardise + PCA on all readable images; one LogisticRegression per fold
    (and one on the standardised, PCA-projected ``pixels`` of the same rows, when
    given; and a whole head set per array of ``extra``-scale backbone features).
    Returns the heads and the PCA embedding of ``raw``."""
    heads, emb = _fit_scale(raw, rows_of_raw, labels, mask, folds, n_folds, seed, progress, pixels)
    if n_folds:
        for raw_s in extra:
            sub, _ = _fit_scale(raw_s, rows_of_raw, labels, mask, folds, n_folds, seed, progress)
            heads.extra.append(sub)
    return heads, emb


def _fit_scale(
    raw: np.ndarray, rows_of_raw: np.ndarray, labels: np.ndarray, mask: np.ndarray,
    folds: np.ndarray, n_folds: int, seed: int, progress: bool,
    pixels: np.ndarray | None = None,
) -> tuple[_FastHeads, np.ndarray]:
    """The heads of one backbone scale (and the pixel head): see :func:`_fit_heads`."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    raw = raw.astype(np.float64)
    mean = raw.mean(axis=0)
    scale = raw.std(axis=0)
    scale[scale < 1e-8] = 1.0
    z = (raw - mean) / scale
    d = int(min(FAST_PCA_DIMS, z.shape[0] - 1, z.shape[1]))
    # fitted in float32: the randomized SVD is ~2x quicker, and the components need no
    # more precision than the features have
    pca = PCA(n_components=max(d, 1), random_state=seed).fit(z.astype(np.float32))
    heads = _FastHeads(
        mean, scale, pca.components_.astype(np.float64), pca.mean_.astype(np.float64), [], [], []
    )
    emb = heads.embed(raw)
    zpix: np.ndarray | None = None
    if pixels is not None and n_folds:
        heads.pix_mean = pixels.mean(axis=0).astype(np.float64)
        pscale = pixels.std(axis=0).astype(np.float64)
        pscale[pscale < 1e-8] = 1.0
        heads.pix_scale = pscale
        zpix = (pixels - heads.pix_mean) / pscale
        dp = int(min(FAST_PIXEL_PCA_DIMS, zpix.shape[0] - 1, zpix.shape[1]))
        if dp >= 1 and dp < zpix.shape[1]:
            ppca = PCA(n_components=dp, random_state=seed).fit(zpix)
            heads.pix_components, heads.pix_pca_mean = ppca.components_, ppca.mean_
            zpix = heads.embed_pixels(pixels)
    pos_in_raw = {int(r): i for i, r in enumerate(rows_of_raw)}
    for f in _progress(range(n_folds), progress, desc="folds (linear heads)"):
        train = np.flatnonzero(mask & (folds != f) & (folds >= 0))
        rows = [pos_in_raw[int(r)] for r in train]
        y = labels[train]
        present = np.unique(y)
        for x, c, coef, icpt in (
            (emb, FAST_C, heads.coef, heads.intercept),
            (zpix, FAST_PIXEL_C, heads.pix_coef, heads.pix_intercept),
        ):
            if x is None:
                continue
            if len(present) == 1:  # a degenerate fold: predict its only class
                coef.append(np.zeros((1, x.shape[1])))
                icpt.append(np.zeros(1))
            else:
                clf = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(x[rows], y)
                coef.append(clf.coef_)
                icpt.append(clf.intercept_)
        heads.class_idx.append(present.astype(int))
    return heads, emb


def _run_fast(
    plan: _Plan, abspaths: list[str], labels: np.ndarray, mask: np.ndarray, folds: np.ndarray,
    ok: np.ndarray, k: int, extractor: FeatureExtractor,
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
    n = len(abspaths)
    readable = np.flatnonzero(ok)
    raw, pix, extra = _extract(plan, abspaths, readable, extractor, "embeddings")
    n_folds = int(folds.max()) + 1 if mask.any() else 0
    probs = np.full((n, k), np.nan)
    embeddings = np.full((n, 0), np.nan)
    blobs: dict[str, bytes] = {}
    if len(readable) >= 2:
        heads, emb = _fit_heads(
            raw, readable, labels, mask, folds, n_folds, plan.seed, plan.progress, pix, extra
        )
        embeddings = np.full((n, emb.shape[1]), np.nan)
        embeddings[readable] = emb
        probs = _heads_oof_probs(heads, emb, pix, readable, mask, folds, n_folds, k, extra)
        blobs["heads"] = heads.to_bytes()
    arrays = {"mask": mask, "folds": folds, "probs": probs, "embeddings": embeddings}
    return arrays, {"n_folds": n_folds, "lr": None}, blobs


def _heads_oof_probs(
    heads: _FastHeads, emb: np.ndarray, pix: np.ndarray | None, readable: np.ndarray,
    mask: np.ndarray, folds: np.ndarray, n_folds: int, k: int, extra: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """(N, k) out-of-fold probabilities of the fitted heads: each predicted row by its
    own fold's head; ``emb``/``pix``/``extra`` hold the ``readable`` rows only. NaN
    elsewhere."""
    n = len(mask)
    probs = np.full((n, k), np.nan)
    row_of = np.full(n, -1)
    row_of[readable] = np.arange(len(readable))
    for f in range(n_folds):
        rows = np.flatnonzero(mask & (folds == f))
        if len(rows):
            rpix = pix[row_of[rows]] if pix is not None else None
            rx = [x[row_of[rows]] for x in extra]
            probs[rows] = heads.probs(f, emb[row_of[rows]], k, rpix, rx)
    return probs


def _run_finetune(
    plan: _Plan, abspaths: list[str], labels: np.ndarray, mask: np.ndarray, folds: np.ndarray,
    ok: np.ndarray, classes: list[str],
) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, bytes]]:
    import torch

    n, k = len(abspaths), len(classes)
    # embeddings for the outlier check come from the frozen backbone: one space for
    # all images (each fold model has its own feature space). With ``plan.ensemble``
    # the fast heads are fitted on the same folds too (seconds, next to the fine-tunes)
    readable = np.flatnonzero(ok)
    # (the extra scales serve the fast heads only: not needed without the ensemble)
    fast = dataclasses.replace(
        plan, size=max(plan.size, FAST_MIN_SIZE), scales=plan.scales if plan.ensemble else ()
    )
    extractor = FeatureExtractor(plan.arch, plan.pretrained, plan.seed)
    embeddings = np.full((n, 0), np.nan)
    n_folds = int(folds.max()) + 1 if mask.any() else 0
    fast_probs: np.ndarray | None = None
    n_heads = 0
    blobs_heads: bytes | None = None
    if len(readable) >= 2:
        raw, pix, extra = _extract(fast, abspaths, readable, extractor, "embeddings")
        head_folds = n_folds if plan.ensemble else 0
        heads, emb = _fit_heads(
            raw, readable, labels, mask, folds, head_folds, plan.seed, False, pix, extra
        )
        embeddings = np.full((n, emb.shape[1]), np.nan)
        embeddings[readable] = emb
        if head_folds:
            fast_probs = _heads_oof_probs(
                heads, emb, pix, readable, mask, folds, head_folds, k, extra
            )
            n_heads = heads.n_heads
            blobs_heads = heads.to_bytes()
    del extractor
    blobs: dict[str, bytes] = {} if blobs_heads is None else {"heads": blobs_heads}
    lr = plan.lr
    for f in _progress(range(n_folds), plan.progress, desc="folds (fine-tune)"):
        net, lr = _train_fold(plan, abspaths, labels, mask, folds, f, classes, lr)
        buf = io.BytesIO()
        torch.save({k_: v.detach().cpu() for k_, v in net.state_dict().items()}, buf)
        blobs[f"fold{f}"] = buf.getvalue()
    probs = np.full((n, k), np.nan)
    arrays = {"mask": mask, "folds": folds, "probs": probs, "embeddings": embeddings}
    if n_folds:
        predictor = _FinetunePredictor(plan, abspaths, [blobs[f"fold{f}"] for f in range(n_folds)], k)
        tmp = OOF(classes, labels, mask, folds, probs, None, "finetune", [], _predictor=predictor)
        probs[:] = predictor.predict_views(tmp, {"identity": _identity}, plan.progress)["identity"]
        if fast_probs is not None:
            # every model weighs the same: the CNN and each fast head (backbone, its
            # extra scales, pixels).
            # Their errors differ (fine-tuned vs frozen features), so the mean is better
            # calibrated than either: fold 0 of benchmarks/labels.py, label-score AUROC
            # 0.966 (CNN), 0.980 (fast heads), 0.982 (mean). _FinetunePredictor
            # mixes every view's probabilities the same way
            w = 1.0 / (1 + n_heads)
            probs[:] = w * probs + (1.0 - w) * fast_probs
    return arrays, {"n_folds": n_folds, "lr": lr, "ensemble_heads": n_heads}, blobs


class _GetX:
    """fastai ``get_x`` over integer items: the image via the one loader (picklable)."""

    def __init__(self, abspaths: list[str], size: int, max_pixels: int) -> None:
        self.abspaths, self.size, self.max_pixels = abspaths, size, max_pixels

    def __call__(self, i: int) -> Any:
        from fastai.vision.core import PILImage

        from .imaging import load_rgb

        return PILImage.create(
            load_rgb(self.abspaths[int(i)], max_pixels=self.max_pixels, decode_size=self.size)
        )


class _GetY:
    """fastai ``get_y`` over integer items: the class name (picklable)."""

    def __init__(self, labels: np.ndarray, classes: list[str]) -> None:
        self.labels, self.classes = labels, classes

    def __call__(self, i: int) -> str:
        return self.classes[int(self.labels[int(i)])]


def _train_fold(
    plan: _Plan, abspaths: list[str], labels: np.ndarray, mask: np.ndarray, folds: np.ndarray,
    fold: int, classes: list[str], lr: float | None,
) -> tuple[torch.nn.Module, float]:
    """Train one fold's ``vision_learner``; returns the model and the learning rate used."""
    import fastai.callback.schedule  # noqa: F401  (adds fit_one_cycle, fine_tune, lr_find)
    import torch
    from fastai.callback.progress import ProgressCallback
    from fastai.data.block import CategoryBlock, DataBlock
    from fastai.data.transforms import IndexSplitter, Normalize
    from fastai.vision.augment import Resize, ResizeMethod, aug_transforms
    from fastai.vision.data import ImageBlock
    from fastai.vision.learner import vision_learner

    torch.manual_seed(plan.seed + fold)
    np.random.seed(plan.seed + fold)
    items = np.flatnonzero(mask)
    valid = np.flatnonzero(folds[items] == fold)
    # no rotation, no flip, no warp: the rotation probe must measure those (module doc)
    augs = aug_transforms(
        do_flip=False, flip_vert=False, max_rotate=0.0, max_warp=0.0,
        max_zoom=FINETUNE_MAX_ZOOM, max_lighting=FINETUNE_MAX_LIGHTING,
    )
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=classes)),
        get_x=_GetX(abspaths, plan.size, plan.max_pixels), get_y=_GetY(labels, classes), splitter=IndexSplitter(valid),
        item_tfms=Resize(plan.size, method=ResizeMethod.Squish),
        batch_tfms=[*augs, Normalize.from_stats(IMAGENET_MEAN, IMAGENET_STD)],
    )
    dls = dblock.dataloaders(
        list(items), bs=plan.batch_size, num_workers=plan.workers, device=_device(),
        shuffle=True, seed=plan.seed + fold,
    )
    model = build_torchvision(plan.arch, plan.pretrained)
    learn = vision_learner(
        dls, _Prebuilt(model), normalize=False, n_out=len(classes), pretrained=plan.pretrained,
    )
    if not plan.progress:
        learn.remove_cb(ProgressCallback)
    # fastai writes checkpoints (lr_find's _tmp.pth) under learn.path / model_dir, which
    # defaults to the current directory - possibly the user's dataset: keep them in a
    # private temporary directory instead
    with tempfile.TemporaryDirectory(prefix="imgaudit-fit-") as tmp, learn.no_logging():
        learn.path = Path(tmp)
        learn.model_dir = Path(tmp) / "models"
        if lr is None:
            # one lr_find (on the first fold) serves all folds: same data, same model
            lr = float(learn.lr_find(show_plot=False).valley)
            logger.info("lr_find suggests %.2e", lr)
        if plan.pretrained:
            learn.fine_tune(plan.epochs, base_lr=lr, freeze_epochs=1, lr_mult=FINETUNE_LR_MULT)
        else:
            learn.fit_one_cycle(plan.epochs, lr)
    values = learn.recorder.values[-1] if learn.recorder.values else []
    logger.info("fold %d trained: %s", fold, [round(float(v), 4) for v in values])
    return learn.model, lr
