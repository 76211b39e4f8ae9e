"""The decode pass: ONE decode per image, shared by every property and hash check.

For each image of the table the pass reads the file once and computes

- ``sha1`` of the file bytes and ``pixel_hash`` (sha1 of the displayed size and
  the decoded RGB pixels at decode scale: equal for files whose pixels are equal,
  e.g. the same PNG re-saved with other compression or metadata);
- properties: ``width``, ``height`` (full size, as displayed), ``mode``,
  ``channels``, ``format``, ``file_size``, ``exif_orientation``,
  ``decoded_width``, ``decoded_height``;
- the statistics the property checks read (:data:`STAT_COLUMNS`), on the image
  resized to a short side of :data:`STAT_SIDE` pixels (never upsampled);
- perceptual hashes of the 8 dihedral views (:func:`imgaudit.hashing.compute_hashes`);
- a JPEG thumbnail (longest side ``config.thumbnail_size``).

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

import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import os
from collections.abc import Iterable, Iterator
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
RECORD_VERSION = 1
#: short side (pixels) of the image the statistics are computed on
STAT_SIDE = 128
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
        return "decode-" + key_of(RECORD_VERSION, STAT_SIDE, self.decode_size, self.max_pixels,
                                  sorted(self.hash_kinds), self.thumbnail_size)[:16]  # fmt: skip

    def thumb_namespace(self) -> str:
        return thumb_namespace(self.thumbnail_size)


# -- per-image work (no pandas here: it runs once per image, in worker processes) -----


def image_stats(img: Image.Image) -> dict[str, float]:
    """Statistics of an RGB image used by the property checks.

    Computed on the image resized (box filter: area average, the cheapest
    antialiased downscale) to a short side of :data:`STAT_SIDE`, so that they do
    not depend on the file's resolution. Percentiles come from 256-bin histograms
    (no sorting); per-pixel channel extremes use elementwise max/min over the three
    channel planes (a reduction over a length-3 axis is ~15x slower in numpy).
    """
    w, h = img.size
    short = min(w, h)
    if short > STAT_SIDE:
        k = STAT_SIDE / short
        img = img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BOX)
    rgb = np.asarray(img)
    gray = np.asarray(img.convert("L"))
    n = gray.size
    hist = np.bincount(gray.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    levels = np.arange(256)
    p = hist[hist > 0] / n
    r, g_, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    chroma = np.maximum(np.maximum(r, g_), b) - np.minimum(np.minimum(r, g_), b)
    chist = np.cumsum(np.bincount(chroma.ravel(), minlength=256))
    g = gray.astype(np.float32)
    gstd = float(g.std())
    if g.shape[0] >= 3 and g.shape[1] >= 3 and gstd > 0:
        lap = 4.0 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
        sharpness = float(lap.std()) / gstd
    else:
        sharpness = float("nan") if min(g.shape) < 3 else 0.0
    return {
        "brightness_mean": float((hist * levels).sum()) / n / 255.0,
        "brightness_p05": float(np.searchsorted(cdf, 0.05 * n)) / 255.0,
        "brightness_p99": float(np.searchsorted(cdf, 0.99 * n)) / 255.0,
        "chroma_mean": float(chroma.mean()) / 255.0,
        "chroma_p99": float(np.searchsorted(chist, 0.99 * n)) / 255.0,
        "gray_std": gstd / 255.0,
        "sharpness": sharpness,
        "entropy": max(0.0, float(-(p * np.log2(p)).sum()) / 8.0),
    }


def _thumbnail_bytes(img: Image.Image, size: int) -> bytes:
    t = img.copy()
    t.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    t.save(buf, format="JPEG", quality=THUMB_QUALITY)
    return buf.getvalue()


def _failed(reason: str, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"ok": False, "error": reason}
    rec.update(extra)
    return rec


def analyse_bytes(data: bytes, opts: DecodeOptions) -> tuple[dict[str, Any], dict[str, list[int]], bytes | None]:
    """Decode one file's bytes: ``(record, {kind: 8 hash ints}, thumbnail JPEG)``."""
    from .hashing import compute_hashes

    sha1 = hashlib.sha1(data).hexdigest()
    try:
        li = load_image(data, max_pixels=opts.max_pixels, decode_size=opts.decode_size)
    except UnreadableImage as exc:
        return _failed(exc.reason, sha1=sha1, file_size=len(data)), {}, None
    img = li.image
    rec: dict[str, Any] = {
        "ok": True,
        "error": None,
        "sha1": sha1,
        "pixel_hash": hashlib.sha1(f"{li.width}x{li.height}:".encode() + img.tobytes()).hexdigest(),
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
    rec.update(image_stats(img))
    hashes = {k: [int(x) for x in v] for k, v in compute_hashes(img, opts.hash_kinds).items()} if opts.hash_kinds else {}
    return rec, hashes, _thumbnail_bytes(img, opts.thumbnail_size)


# worker-process state, set once per process by _init_worker
_OPTS: DecodeOptions | None = None
_KNOWN: frozenset[str] = frozenset()

_Task = tuple[int, str, int, int]  # (row, absolute path, size, mtime_ns)
_Result = tuple[int, "str | None", "dict[str, Any] | None", dict[str, list[int]], "bytes | None"]


def _init_worker(opts: DecodeOptions, known: frozenset[str]) -> None:
    global _OPTS, _KNOWN
    _OPTS, _KNOWN = opts, known


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
    rec, hashes, thumb = analyse_bytes(data, _OPTS)
    return i, sha1, rec, hashes, thumb


def _process_chunk(tasks: list[_Task]) -> list[_Result]:
    return [_process(t) for t in tasks]


def _start_method() -> str | None:
    # fork: cheap, and it never re-imports the user's __main__ (forkserver/spawn
    # re-run an unguarded script's top level, and fail from stdin). Workers only
    # use PIL and numpy, never torch, so a parent that holds torch's thread pools
    # is safe to fork. Elsewhere (macOS, Windows) keep the platform default.
    return "fork" if "fork" in mp.get_all_start_methods() else None


def _run_tasks(tasks: list[_Task], opts: DecodeOptions, known: frozenset[str], workers: int) -> Iterator[list[_Result]]:
    if not tasks:
        return
    if workers <= 1 or len(tasks) < 8:
        _init_worker(opts, known)
        for j in range(0, len(tasks), 16):
            yield _process_chunk(tasks[j : j + 16])
        return
    # several chunks per worker balance the load; chunks of <= 64 keep the bar moving
    chunk = max(1, min(64, math.ceil(len(tasks) / (workers * 4))))
    ctx = mp.get_context(_start_method())
    with ProcessPoolExecutor(
        max_workers=min(workers, math.ceil(len(tasks) / chunk)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(opts, known),
    ) as ex:
        futures = [ex.submit(_process_chunk, tasks[j : j + chunk]) for j in range(0, len(tasks), chunk)]
        for fut in as_completed(futures):
            yield fut.result()


# -- the pass -----------------------------------------------------------------------------


def _encode_record(rec: dict[str, Any], hashes: dict[str, list[int]]) -> bytes:
    return json.dumps({"rec": rec, "hashes": {k: [f"{x:016x}" for x in v] for k, v in hashes.items()}}).encode()


def _decode_record(blob: bytes) -> tuple[dict[str, Any], dict[str, list[int]]]:
    obj = json.loads(blob)
    return obj["rec"], {k: [int(x, 16) for x in v] for k, v in obj["hashes"].items()}


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
    stats
        How the pass went: ``decoded`` (images decoded now), ``from_cache``
        (records reused), ``failed`` (rows that could not even be read).
    """

    records: pd.DataFrame
    hashes: dict[str, np.ndarray]
    stats: dict[str, int] = field(default_factory=dict)
    _cache: Cache | None = field(default=None, repr=False)
    _thumb_ns: str = "thumb"
    _memory_thumbs: dict[str, bytes] = field(default_factory=dict, repr=False)

    def thumbnail(self, path: str) -> Image.Image | None:
        """The thumbnail of an image (RGB, longest side ``thumbnail_size``); None if unreadable."""
        if path not in self.records.index:
            raise KeyError(path)
        sha1 = self.records.at[path, "sha1"]
        if not self.records.at[path, "ok"] or not isinstance(sha1, str):
            return None
        data = self._memory_thumbs.get(sha1)
        if data is None and self._cache is not None:
            data = self._cache.get(self._thumb_ns, sha1)
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
    ns, tns = opts.namespace(), opts.thumb_namespace()
    table = imageset.table
    n = len(table)
    results: list[dict[str, Any] | None] = [None] * n
    hashes = {k: np.zeros((n, 8), dtype=np.uint64) for k in opts.hash_kinds}

    def set_hashes(i: int, hs: dict[str, list[int]]) -> None:
        for k, v in hs.items():
            if k in hashes:
                hashes[k][i] = np.asarray(v, dtype=np.uint64)

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
            rec, hs = _decode_record(blob)
            results[t[0]] = rec
            set_hashes(t[0], hs)
            from_cache += 1
        tasks = remaining
        known = frozenset(cache.keys(ns))

    # 2. everything else: read + hash the bytes; decode only unseen content
    decoded = 0
    memory_thumbs: dict[str, bytes] = {}
    task_of = {t[0]: t for t in tasks}
    pending_recs: dict[str, bytes] = {}
    pending_thumbs: dict[str, bytes] = {}
    pending_stats: list[tuple[str, int, int, str]] = []

    def flush() -> None:
        if cache is None:
            return
        if pending_recs:
            cache.put_many(ns, pending_recs)
        if pending_thumbs:
            cache.put_many(tns, pending_thumbs)
        if pending_stats:
            cache.remember_stats(pending_stats)
        pending_recs.clear()
        pending_thumbs.clear()
        pending_stats.clear()

    reuse: list[tuple[int, str]] = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="decoding images", unit="img", disable=None if config.progress else True)
    try:
        for chunk in _run_tasks(tasks, opts, known, config.workers()):
            for i, sha1, maybe_rec, hs, thumb in chunk:
                t = task_of[i]
                if maybe_rec is None:  # cached content under another path
                    reuse.append((i, str(sha1)))
                else:
                    rec = maybe_rec
                    results[i] = rec
                    set_hashes(i, hs)
                    if sha1 is not None:
                        decoded += 1
                        pending_recs[sha1] = _encode_record(rec, hs)
                        if thumb is not None:
                            if cache is None:
                                memory_thumbs[sha1] = thumb
                            else:
                                pending_thumbs[sha1] = thumb
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
            rec, hs = _decode_record(blobs[sha1])
            results[i] = rec
            set_hashes(i, hs)
        from_cache += len(reuse)

    records = _records_frame(results, table.index)
    stats = {"decoded": decoded, "from_cache": from_cache, "failed": failed, "total": n}
    logger.info("decode pass: %s", stats)
    return DecodeOutput(records, hashes, stats, cache, tns, memory_thumbs)


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
