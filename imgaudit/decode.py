"""The decode pass: ONE decode per image, shared by every property and hash check.

For each image of the table the pass reads the file once and computes

- ``sha1`` of the file bytes and ``pixel_hash`` (sha1 of the displayed size and
  the decoded RGB pixels at decode scale: equal for files whose pixels are equal,
  e.g. the same PNG re-saved with other compression or metadata);
- properties: ``width``, ``height`` (full size, as displayed), ``mode``,
  ``channels``, ``format``, ``file_size``, ``exif_orientation``,
  ``decoded_width``, ``decoded_height``;
- the statistics the property checks read (:data:`STAT_COLUMNS`): histogram
  statistics at decode scale, sharpness at a short side of :data:`STAT_SIDE`
  pixels (never upsampled);
- perceptual hashes of the 8 dihedral views (and phash's jitter and centre views)
  and phash's real-valued low-frequency DCT block
  (:func:`imgaudit.hashing.hash_image`, the block in :attr:`DecodeOutput.features`),
  of the decoded image box-reduced to a 32..63 px short side (:func:`_hash_input`);

Thumbnails are not made here: a report or gallery shows a few hundred flagged
images, so :meth:`DecodeOutput.thumbnail` (and the report) make those on demand
from the source file and cache them (:func:`make_thumbnail`). Making one for every
image cost ~5% of the pass and ~5 KB of cache per image that nobody looked at.

What it costs per image, and why it is shaped this way: JPEGs are decoded in
``draft`` mode at the smallest 1/2..1/8 scale that keeps ``decode_size`` pixels
on the short side (1/8 for ~1024 px photos: entropy decoding is then most of the
pass); one grayscale conversion feeds the statistics and every hash; phash's 32x32
grid feeds its 8 dihedral views, its 8 jitter views, its centre views and the DCT
feature (in one compiled call); the statistics are one compiled call too
(:mod:`imgaudit._kernels`). Worker processes freeze the heap they inherit from the
parent, so the garbage collector does not walk it for every few hundred images.

Work is spread over processes in chunks (``config.workers()``, resolved at call
time; 0 or 1 runs in-process) with a progress bar. The per-image work touches no
pandas. Results are cached by content: a stat index ``(path, size, mtime_ns) ->
sha1`` skips reading unchanged files, and records are keyed by ``sha1`` in a
namespace derived from the decode options, so a re-run after adding 10 images
decodes 10 images, and renamed or copied files reuse their record.

Integer columns use 0 where unknown (unreadable file: ``ok`` False); statistics
are NaN there.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from .cache import key_of
from .imageset import _stat_problem
from .imaging import UnreadableImage, load_image

if TYPE_CHECKING:
    from .cache import Cache
    from .config import AuditConfig
    from .imageset import ImageSet

logger = logging.getLogger(__name__)

#: bump when the content of a record changes, so old cache entries are not reused
RECORD_VERSION = 4
#: short side (pixels) of the image the sharpness statistic is computed on: a fixed
#: scale, so that it does not depend on the file's resolution (equal to the default
#: ``decode_size``, so a large JPEG needs no extra resize beyond the draft decode)
STAT_SIDE = 64
#: short side (pixels) at or above which the decode pass hashes a reduced image (:func:`_hash_input`)
HASH_SIDE = 32
#: JPEG quality of cached thumbnails
THUMB_QUALITY = 85
#: cache writes are flushed every this many decoded images (an interrupted run resumes)
FLUSH_EVERY = 256

PROPERTY_COLUMNS: tuple[str, ...] = (
    "ok", "error", "sha1", "pixel_hash", "width", "height", "mode", "channels", "format",
    "file_size", "exif_orientation", "decoded_width", "decoded_height",
)  # fmt: skip
#: statistics read by :mod:`imgaudit.checks.properties` (all in [0, 1] except sharpness)
STAT_COLUMNS: tuple[str, ...] = (
    "brightness_mean", "brightness_p05", "brightness_p99", "chroma_mean", "chroma_p99",
    "gray_std", "sharpness", "entropy",
)  # fmt: skip
RECORD_COLUMNS: tuple[str, ...] = PROPERTY_COLUMNS + STAT_COLUMNS
_INT_COLUMNS = ("width", "height", "channels", "file_size", "exif_orientation", "decoded_width", "decoded_height")


def thumb_namespace(size: int) -> str:
    """Cache namespace of thumbnails of longest side ``size`` (shared with the report)."""
    return f"thumb-{size}"


@dataclass(frozen=True)
class DecodeOptions:
    """Everything a record depends on besides the file bytes."""

    decode_size: int
    max_pixels: int
    hash_kinds: tuple[str, ...]
    thumbnail_size: int

    @classmethod
    def from_config(cls, config: AuditConfig) -> DecodeOptions:
        return cls(
            decode_size=int(config.decode_size),
            max_pixels=int(config.max_pixels),
            hash_kinds=tuple(config.hash_kinds),
            thumbnail_size=int(config.thumbnail_size),
        )

    def namespace(self) -> str:
        """Cache namespace of records decoded with these options."""
        # thumbnail_size is not part of it: records do not depend on it
        return "decode-" + key_of(RECORD_VERSION, STAT_SIDE, HASH_SIDE, self.decode_size, self.max_pixels,
                                  sorted(self.hash_kinds))[:16]  # fmt: skip

    def thumb_namespace(self) -> str:
        return thumb_namespace(self.thumbnail_size)


# -- per-image work (no pandas here: it runs once per image, in worker processes) -----


def image_stats(img: Image.Image, gray: Image.Image | None = None, rgb: np.ndarray | None = None) -> dict[str, float]:
    """Statistics of an RGB image used by the property checks.

    Histogram statistics (brightness mean and percentiles, grey-level standard
    deviation and entropy, chroma mean and 99th percentile) are computed on the
    image as given (the decode pass gives it at decode scale; a histogram barely
    depends on the scale). ``sharpness`` (std of the 4-neighbour Laplacian over
    the grey std) does depend on the scale, so it is computed on the grey image
    resized (box filter: area average) to a short side of :data:`STAT_SIDE`,
    never upsampled. Percentiles come from 256-bin histograms (no sorting). The
    loops are compiled (:mod:`imgaudit._kernels`).

    Parameters
    ----------
    img
        RGB image.
    gray
        ``img.convert("L")`` when the caller has it already.
    rgb
        ``np.asarray(img)`` when the caller has it already.
    """
    from ._kernels import stats_kernel

    if img.mode != "RGB":
        img, rgb = img.convert("RGB"), None
    if gray is None:
        gray = img.convert("L")
    small = gray
    w, h = gray.size
    short = min(w, h)
    if short > STAT_SIDE:
        k = STAT_SIDE / short
        small = gray.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BOX)
    values = stats_kernel(np.asarray(img) if rgb is None else rgb, np.asarray(gray), np.asarray(small))
    return dict(zip(STAT_COLUMNS, (float(v) for v in values), strict=True))


def _thumbnail_bytes(img: Image.Image, size: int) -> bytes:
    if max(img.size) > size:
        img = img.copy()
        img.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


def make_thumbnail(source: str | os.PathLike[str] | bytes, size: int, max_pixels: int | None = None) -> bytes:
    """A JPEG thumbnail (RGB, as displayed, longest side ``size``) of an image file.

    Decodes at thumbnail scale (JPEG draft mode: a few ms for a 1024 px photo).
    Raises :class:`imgaudit.imaging.UnreadableImage` (with its ``reason``) when the
    file cannot be decoded.
    """
    from .imaging import DEFAULT_MAX_PIXELS

    li = load_image(source, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, decode_size=size)
    return _thumbnail_bytes(li.image, size)


def _hash_input(gray: Image.Image) -> Image.Image:
    """The image the decode pass hashes: box-reduced by an integer factor to a short
    side of 32..63 px. phash's 32x32 grid needs no more, and its Lanczos resize is
    3x cheaper from there than from the 64..127 px decode scale; the hashes are
    then exactly ``compute_hashes`` (and imagehash) of this reduced image."""
    factor = min(gray.size) // HASH_SIDE
    return gray.reduce(factor) if factor >= 2 else gray


def _failed(reason: str, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"ok": False, "error": reason}
    rec.update(extra)
    return rec


def analyse_bytes(
    data: bytes, opts: DecodeOptions, sha1: str | None = None
) -> tuple[dict[str, Any], dict[str, bytes], bytes | None]:
    """Decode one file's bytes: ``(record, {kind: hashes}, DCT feature)``.

    Hashes are the 8 uint64 codes of each kind as little-endian bytes (cheaper to
    pass between processes and to store than Python ints).

    The DCT feature is :func:`imgaudit.hashing.dct_block` as float16 bytes (None
    without a phash kind). ``sha1``: the bytes' digest when the caller has it.
    """
    from .hashing import hash_image

    if sha1 is None:
        sha1 = hashlib.sha1(data).hexdigest()
    try:
        li = load_image(data, max_pixels=opts.max_pixels, decode_size=opts.decode_size)
    except UnreadableImage as exc:
        return _failed(exc.reason, sha1=sha1, file_size=len(data)), {}, None
    img = li.image
    pixels = img.tobytes()  # RGB: for the pixel hash and, as an array, the statistics
    rec: dict[str, Any] = {
        "ok": True,
        "error": None,
        "sha1": sha1,
        "pixel_hash": hashlib.sha1(f"{li.width}x{li.height}:".encode() + pixels).hexdigest(),
        "width": li.width,
        "height": li.height,
        "mode": li.mode,
        "channels": li.channels,
        "format": li.format,
        "file_size": len(data),
        "exif_orientation": li.exif_orientation,
        "decoded_width": img.size[0],
        "decoded_height": img.size[1],
    }
    gray = img.convert("L")  # one conversion for the statistics and every hash
    rgb = np.frombuffer(pixels, dtype=np.uint8).reshape(img.size[1], img.size[0], 3)
    rec.update(image_stats(img, gray, rgb))
    hashes: dict[str, bytes] = {}
    dct: bytes | None = None
    if opts.hash_kinds:
        out = hash_image(_hash_input(gray), opts.hash_kinds)
        hashes = {k: v.astype("<u8").tobytes() for k, v in out.hashes.items()}
        dct = out.dct.tobytes() if out.dct is not None else None
    return rec, hashes, dct


# worker-process state, set once per process by _init_worker
_OPTS: DecodeOptions | None = None
_KNOWN: frozenset[str] = frozenset()

_Task = tuple[int, str, int, int]  # (row, absolute path, size, mtime_ns)
# (row, sha1, record or None when cached, hashes, DCT feature bytes)
_Result = tuple[int, "str | None", "dict[str, Any] | None", dict[str, bytes], "bytes | None"]


def _init_worker(opts: DecodeOptions, known: frozenset[str], in_pool: bool = False) -> None:
    global _OPTS, _KNOWN
    _OPTS, _KNOWN = opts, known
    if in_pool:
        # a forked worker inherits the parent's whole heap (numpy, scipy, PIL, numba,
        # maybe torch): without this, every full collection triggered by the
        # per-image allocations walks it all (~4% of a worker's time)
        gc.freeze()


def _process(task: _Task) -> _Result:
    """Read, hash and (unless its record is already cached) decode one file."""
    i, path, _, _ = task
    if _OPTS is None:
        raise RuntimeError("decode worker used before _init_worker")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        reason = _stat_problem(path) or f"cannot open file: {exc.strerror or exc}"
        return i, None, _failed(reason), {}, None
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 in _KNOWN:
        # renamed or copied file: the record of these bytes is in the cache already
        return i, sha1, None, {}, None
    rec, hashes, dct = analyse_bytes(data, _OPTS, sha1)
    return i, sha1, rec, hashes, dct


def _process_chunk(tasks: list[_Task]) -> list[_Result]:
    return [_process(t) for t in tasks]


def _start_method() -> str | None:
    # fork: cheap, and it never re-imports the user's __main__ (forkserver/spawn
    # re-run an unguarded script's top level, and fail from stdin). Workers only
    # use PIL and numpy, never torch, so a parent that holds torch's thread pools
    # is safe to fork. Elsewhere (macOS, Windows) keep the platform default.
    return "fork" if "fork" in mp.get_all_start_methods() else None


def _warm_up(opts: DecodeOptions) -> None:
    """Analyse one tiny JPEG here, before the workers fork: the imports (scipy's
    DCT, numba and the compiled kernels, PIL's plugins) are then loaded once and
    inherited, instead of paid by every worker (~0.5 s each)."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 150)).save(buf, format="JPEG")
    analyse_bytes(buf.getvalue(), opts)


def _run_tasks(tasks: list[_Task], opts: DecodeOptions, known: frozenset[str], workers: int) -> Iterator[list[_Result]]:
    if not tasks:
        return
    _warm_up(opts)
    if workers <= 1 or len(tasks) < 8:
        _init_worker(opts, known)
        for j in range(0, len(tasks), 16):
            yield _process_chunk(tasks[j : j + 16])
        return
    # many small chunks per worker balance the load: when the last chunk runs, the
    # other workers idle for at most its length (16 images: ~50 ms), and the bar
    # moves; each chunk costs the parent ~0.2 ms of pickling
    chunk = max(1, min(16, math.ceil(len(tasks) / (workers * 8))))
    ctx = mp.get_context(_start_method())
    with ProcessPoolExecutor(
        max_workers=min(workers, math.ceil(len(tasks) / chunk)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(opts, known, True),
    ) as ex:
        futures = [ex.submit(_process_chunk, tasks[j : j + chunk]) for j in range(0, len(tasks), chunk)]
        for fut in as_completed(futures):
            yield fut.result()


# -- the pass -----------------------------------------------------------------------------


def _encode_record(rec: dict[str, Any], hashes: dict[str, bytes], dct: bytes | None) -> bytes:
    obj: dict[str, Any] = {"rec": rec, "hashes": {k: v.hex() for k, v in hashes.items()}}
    if dct is not None:
        obj["dct"] = dct.hex()
    return json.dumps(obj).encode()


def _decode_record(blob: bytes) -> tuple[dict[str, Any], dict[str, bytes], bytes | None]:
    obj = json.loads(blob)
    dct = obj.get("dct")
    return obj["rec"], {k: bytes.fromhex(v) for k, v in obj["hashes"].items()}, None if dct is None else bytes.fromhex(dct)


@dataclass
class DecodeOutput:
    """Result of :func:`run_decode_pass`.

    Attributes
    ----------
    records
        One row per image (index = the image table's), columns
        :data:`RECORD_COLUMNS`.
    hashes
        ``{kind: uint64 array (N, 8)}``, columns in
        :data:`imgaudit.hashing.DIHEDRAL_VIEWS` order; rows of unreadable images are 0.
    features
        ``{"phash_dct": float16 array (N, 8, 8)}`` when phash is among the hash
        kinds: phash's low-frequency DCT block (:func:`imgaudit.hashing.dct_block`;
        all zero for unreadable images), which the near-duplicate check uses to
        verify candidate pairs.
    stats
        How the pass went: ``decoded`` (images decoded now), ``from_cache``
        (records reused), ``failed`` (rows that could not even be read).
    """

    records: pd.DataFrame
    hashes: dict[str, np.ndarray]
    stats: dict[str, int] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    _cache: Cache | None = field(default=None, repr=False)
    _thumb_size: int = 128
    _source: Callable[[str], str] | None = field(default=None, repr=False)
    _memory_thumbs: dict[str, bytes] = field(default_factory=dict, repr=False)

    def thumbnail(self, path: str) -> Image.Image | None:
        """The thumbnail of an image (RGB, longest side ``thumbnail_size``); None if unreadable.

        Made from the source file on first use (:func:`make_thumbnail`) and kept in
        the cache (namespace :func:`thumb_namespace`, keyed by the file's sha1).
        """
        if path not in self.records.index:
            raise KeyError(path)
        sha1 = self.records.at[path, "sha1"]
        if not self.records.at[path, "ok"] or not isinstance(sha1, str):
            return None
        ns = thumb_namespace(self._thumb_size)
        data = self._memory_thumbs.get(sha1)
        if data is None and self._cache is not None:
            data = self._cache.get(ns, sha1)
        if data is None and self._source is not None:
            try:
                data = make_thumbnail(self._source(path), self._thumb_size)
            except UnreadableImage:  # changed on disk since the pass
                return None
            if self._cache is not None:
                self._cache.put_many(ns, {sha1: data})
            else:
                self._memory_thumbs[sha1] = data
        if data is None:
            return None
        img = Image.open(io.BytesIO(data))
        img.load()
        return img


def run_decode_pass(imageset: ImageSet, config: AuditConfig, cache: Cache | None = None) -> DecodeOutput:
    """Decode every image once; return records, hashes and thumbnails.

    Parameters
    ----------
    imageset
        The image table (rows with a ``problem`` are not opened: they become
        unreadable records with that reason).
    config
        Uses ``decode_size``, ``max_pixels``, ``hash_kinds``, ``thumbnail_size``,
        ``workers()`` and ``progress``.
    cache
        On-disk cache; ``None`` keeps thumbnails in memory and caches nothing.

    Returns
    -------
    DecodeOutput

    Examples
    --------
    >>> from imgaudit import load_images, AuditConfig
    >>> out = run_decode_pass(load_images("data/pets"), AuditConfig(), None)  # doctest: +SKIP
    >>> out.records[["width", "height", "ok"]].head()                          # doctest: +SKIP
    """
    opts = DecodeOptions.from_config(config)
    ns = opts.namespace()
    table = imageset.table
    n = len(table)
    results: list[dict[str, Any] | None] = [None] * n
    hashes = {k: np.zeros((n, 8), dtype=np.uint64) for k in opts.hash_kinds}
    with_dct = "phash" in opts.hash_kinds or "phash_jitter" in opts.hash_kinds
    dct_all = np.zeros((n, 8, 8), dtype=np.float16)

    def set_hashes(i: int, hs: dict[str, bytes], dct: bytes | None) -> None:
        for k, v in hs.items():
            if k in hashes:
                hashes[k][i] = np.frombuffer(v, dtype="<u8")
        if dct is not None:
            dct_all[i] = np.frombuffer(dct, dtype=np.float16).reshape(8, 8)

    tasks: list[_Task] = []
    for i, (path, problem) in enumerate(zip(table.index, table["problem"], strict=True)):
        if problem is not None:
            results[i] = _failed(str(problem))
            continue
        ap = os.fspath(imageset.abspath(path))
        try:
            st = os.stat(ap)
        except OSError:
            results[i] = _failed(_stat_problem(ap) or "cannot access file")
            continue
        tasks.append((i, ap, st.st_size, st.st_mtime_ns))
    failed = sum(r is not None for r in results)

    # 1. unchanged files: stat index -> sha1 -> cached record, without reading the file
    known: frozenset[str] = frozenset()
    from_cache = 0
    if cache is not None and tasks:
        by_path = cache.lookup_stats((t[1], t[2], t[3]) for t in tasks)
        blobs = cache.get_many(ns, set(by_path.values()))
        remaining: list[_Task] = []
        for t in tasks:
            blob = blobs.get(by_path.get(t[1], ""))
            if blob is None:
                remaining.append(t)
                continue
            rec, hs, dct = _decode_record(blob)
            results[t[0]] = rec
            set_hashes(t[0], hs, dct)
            from_cache += 1
        tasks = remaining
        known = frozenset(cache.keys(ns))

    # 2. everything else: read + hash the bytes; decode only unseen content
    decoded = 0
    task_of = {t[0]: t for t in tasks}
    pending_recs: dict[str, bytes] = {}
    pending_stats: list[tuple[str, int, int, str]] = []

    def flush() -> None:
        if cache is None:
            return
        if pending_recs:
            cache.put_many(ns, pending_recs)
        if pending_stats:
            cache.remember_stats(pending_stats)
        pending_recs.clear()
        pending_stats.clear()

    reuse: list[tuple[int, str]] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="decoding images", unit="img", disable=None if config.progress else True)
    try:
        for chunk in _run_tasks(tasks, opts, known, config.workers()):
            for i, sha1, maybe_rec, hs, dct in chunk:
                t = task_of[i]
                if maybe_rec is None:  # cached content under another path
                    reuse.append((i, str(sha1)))
                else:
                    rec = maybe_rec
                    results[i] = rec
                    set_hashes(i, hs, dct)
                    if sha1 is not None:
                        decoded += 1
                        if cache is not None:
                            pending_recs[sha1] = _encode_record(rec, hs, dct)
                if sha1 is not None:
                    pending_stats.append((t[1], t[2], t[3], sha1))
            bar.update(len(chunk))
            if len(pending_stats) >= FLUSH_EVERY:
                flush()
    finally:
        bar.close()
        flush()
    if reuse and cache is not None:
        blobs = cache.get_many(ns, {s for _, s in reuse})
        for i, sha1 in reuse:
            rec, hs, dct = _decode_record(blobs[sha1])
            results[i] = rec
            set_hashes(i, hs, dct)
        from_cache += len(reuse)

    records = _records_frame(results, table.index)
    stats = {"decoded": decoded, "from_cache": from_cache, "failed": failed, "total": n}
    logger.info("decode pass: %s", stats)
    features = {"phash_dct": dct_all} if with_dct else {}
    return DecodeOutput(
        records, hashes, stats, features, cache, opts.thumbnail_size, lambda p: os.fspath(imageset.abspath(p))
    )


def _records_frame(results: Iterable[dict[str, Any] | None], index: pd.Index) -> pd.DataFrame:
    rows = [r if r is not None else _failed("not processed") for r in results]
    cols: dict[str, Any] = {}
    for c in RECORD_COLUMNS:
        vals = [r.get(c) for r in rows]
        if c == "ok":
            cols[c] = np.asarray(vals, dtype=bool)
        elif c in _INT_COLUMNS:
            cols[c] = np.asarray([v if v is not None else 0 for v in vals], dtype=np.int64)
        elif c in STAT_COLUMNS:
            cols[c] = np.asarray([v if v is not None else np.nan for v in vals], dtype=np.float64)
        else:
            # object dtype keeps None (pandas 3 would infer "str" with NaN)
            cols[c] = pd.Series(vals, dtype=object, index=index)
    return pd.DataFrame(cols, index=index)
