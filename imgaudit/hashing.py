"""Perceptual hashes of the 8 dihedral views of an image, as uint64 codes.

The decode pass calls :func:`compute_hashes` once per decoded image. Every kind
returns a ``(8,)`` uint64 array. For ``phash``, ``dhash``, ``whash`` and ``ahash``
it is the hash of each dihedral view (identity, the three rotations, the two flips
and the two diagonal reflections) in the column order of :data:`DIHEDRAL_VIEWS`;
column 0 is the image as given and is bit-identical to
``imagehash`` (``int(str(imagehash.phash(img)), 16)``): bits are the hash matrix
flattened row-major, most significant bit first.

``phash`` computes all 8 views from ONE 32x32 DCT: mirroring a signal negates its
odd-frequency DCT-II coefficients, and a transpose transposes the coefficient
block, so every dihedral view of the 8x8 low-frequency block is a sign pattern
and/or transpose of the original block. Only the median is recomputed per view.
(The views are therefore the hash of the *transformed 32x32 grid*; the hash of an
image transformed before resizing can differ by a bit or two for 90-degree
rotations because PIL's separable resize rounds between its two passes.)

``phash_jitter`` covers what dihedral views cannot: small crops and small
rotations. Its 8 columns (:data:`JITTER_VIEWS`) are phashes of the image with a 5%
border cropped, rotated by +5 and -5 degrees (corners filled black, as PIL does),
rotated and cropped, and mirrored variants. They are resampled (bilinear) from the
same 32x32 grid phash already made, in the image's own geometry (a rotation of a
non-square image is a shear of its square grid), so they cost a few thousand
multiply-adds (compiled: :mod:`imgaudit._kernels`) instead of a rotate and a
Lanczos resize per view. A
near-duplicate search that indexes these next to the dihedral views finds a copy
that was cropped or rotated a little (``benchmarks/duplicates.py`` measures on- and
off-grid amounts).

:func:`hash_image` also returns phash's real-valued 8x8 low-frequency DCT block
(:func:`dct_block`: the DC term zeroed, scaled to unit norm, float16; 128 bytes),
which the near-duplicate check uses to verify candidate pairs beyond its hash
radius (a correlation instead of 64 signs).

``phash_center`` is the phash of the middle of the image (:data:`CENTER_BORDER` of
each side cut off, from the same grid), in the 8 dihedral views (a centred crop
commutes with them). Two images whose centres match are duplicates whatever sits
in their outer bands: a watermark, a timestamp, a logo, a caption, a frame. The
near-duplicate check compares it centre to centre.

The other kinds (``dhash``, ``whash``, ``ahash``) are not linear transforms of a
small grid that commutes with the views, so their views are computed by transposing
the grayscale image with PIL (cheap at decode scale) and hashing each one.

Example
-------
>>> from PIL import Image
>>> import numpy as np
>>> img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
>>> h = compute_hashes(img, ("phash",))["phash"]
>>> h.shape, h.dtype
((8,), dtype('uint64'))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "DIHEDRAL_VIEWS",
    "DIHEDRAL_TRANSPOSE",
    "HASH_KINDS",
    "JITTER_VIEWS",
    "JITTER_SPECS",
    "phash_jitter",
    "phash_center",
    "CENTER_BORDER",
    "apply_view",
    "compute_hashes",
    "hash_image",
    "HashOutput",
    "dct_block",
    "view_blocks",
    "phash_views",
    "bits_to_uint64",
    "hamming",
]

#: Names of the 8 dihedral views, in the column order of every hash array.
DIHEDRAL_VIEWS: tuple[str, ...] = (
    "identity",
    "rot90",  # 90 degrees counter-clockwise (PIL ROTATE_90)
    "rot180",
    "rot270",  # 90 degrees clockwise
    "flip_h",  # mirror left-right
    "flip_v",  # mirror top-bottom
    "transpose",  # reflect about the main diagonal
    "transverse",  # reflect about the anti-diagonal
)

#: Columns of the ``phash_jitter`` kind: (name, border cropped per side, degrees
#: counter-clockwise, mirrored left-right).
JITTER_SPECS: tuple[tuple[str, float, float, bool], ...] = (
    ("crop90", 0.05, 0.0, False),
    ("crop90_flip_h", 0.05, 0.0, True),
    ("rot5", 0.0, 5.0, False),
    ("rot5_flip_h", 0.0, 5.0, True),
    ("rot-5", 0.0, -5.0, False),
    ("rot-5_flip_h", 0.0, -5.0, True),
    ("rot5_crop90", 0.05, 5.0, False),
    ("rot-5_crop90", 0.05, -5.0, False),
)
#: Names of the 8 columns of the ``phash_jitter`` kind.
JITTER_VIEWS: tuple[str, ...] = tuple(s[0] for s in JITTER_SPECS)

#: Share of the width and of the height cut off each side for ``phash_center``: the
#: middle 70% is hashed. Chosen on ``benchmarks/duplicates.py``: a corner text
#: watermark there reaches 9% into the picture; cutting 8% left false links
#: between plain crops' centres at 8x the rate of 15% (whose centre is still half
#: the picture's area).
CENTER_BORDER = 0.15

#: The PIL transpose op producing each view (``None`` for the identity).
DIHEDRAL_TRANSPOSE: dict[str, Image.Transpose | None] = {
    "identity": None,
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
    "flip_h": Image.Transpose.FLIP_LEFT_RIGHT,
    "flip_v": Image.Transpose.FLIP_TOP_BOTTOM,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}

_HASH_SIZE = 8
_HIGHFREQ = 4
_DCT_SIZE = _HASH_SIZE * _HIGHFREQ  # 32, as imagehash.phash
_LANCZOS = Image.Resampling.LANCZOS  # imagehash's ANTIALIAS

# How each view acts on the low-frequency DCT block D[u, v] (u: vertical frequency,
# v: horizontal): optionally transpose, then multiply by (-1)^u and/or (-1)^v.
# A left-right mirror x -> W-1-x multiplies DCT-II coefficient v by (-1)^v.
#                    (transpose, negate odd rows u, negate odd columns v)
_VIEW_ALGEBRA: dict[str, tuple[bool, bool, bool]] = {
    "identity": (False, False, False),
    "rot90": (True, True, False),  # np.rot90(P) == P.T[::-1]
    "rot180": (False, True, True),
    "rot270": (True, False, True),  # np.rot90(P, -1) == P.T[:, ::-1]
    "flip_h": (False, False, True),
    "flip_v": (False, True, False),
    "transpose": (True, False, False),
    "transverse": (True, True, True),  # P[::-1, ::-1].T
}


def _sign_patterns() -> tuple[np.ndarray, np.ndarray]:
    par = np.arange(_HASH_SIZE) % 2 == 1
    signs = np.ones((len(DIHEDRAL_VIEWS), _HASH_SIZE, _HASH_SIZE))
    transposed = np.zeros(len(DIHEDRAL_VIEWS), dtype=bool)
    for k, name in enumerate(DIHEDRAL_VIEWS):
        t, neg_u, neg_v = _VIEW_ALGEBRA[name]
        transposed[k] = t
        if neg_u:
            signs[k][par, :] *= -1
        if neg_v:
            signs[k][:, par] *= -1
    return signs, transposed


_SIGNS, _TRANSPOSED = _sign_patterns()

#: The unique (border, angle) resamplings behind the jitter views (a mirrored view
#: reuses its unmirrored grid: mirroring negates the odd horizontal frequencies).
_UNIQUE_JITTER: tuple[tuple[float, float], ...] = tuple(dict.fromkeys((b, a) for _, b, a, _m in JITTER_SPECS))
# every resampling of the grid, the jitter ones then the centre crop
_WARP_BORDERS = np.array([b for b, _ in _UNIQUE_JITTER] + [CENTER_BORDER])
_WARP_ANGLES = np.deg2rad(np.array([a for _, a in _UNIQUE_JITTER] + [0.0]))
_VIEW_T = np.array([_VIEW_ALGEBRA[v][0] for v in DIHEDRAL_VIEWS])
_VIEW_SU = np.array([_VIEW_ALGEBRA[v][1] for v in DIHEDRAL_VIEWS])
_VIEW_SV = np.array([_VIEW_ALGEBRA[v][2] for v in DIHEDRAL_VIEWS])
_JITTER_FLIP = np.array([m for *_, m in JITTER_SPECS])
_JITTER_GRID = np.array([_UNIQUE_JITTER.index((b, a)) for _, b, a, _m in JITTER_SPECS])
_JITTER_SIGN = np.where(np.array([m for *_, m in JITTER_SPECS])[:, None, None], _SIGNS[DIHEDRAL_VIEWS.index("flip_h")], 1.0)


def apply_view(img: Image.Image, view: str) -> Image.Image:
    """Return ``img`` transformed into the named dihedral ``view``."""
    op = DIHEDRAL_TRANSPOSE[view]
    return img if op is None else img.transpose(op)


def bits_to_uint64(bits: np.ndarray) -> np.ndarray:
    """Pack boolean hash matrices ``(..., 8, 8)`` into uint64 (row-major, MSB first)."""
    bits = np.asarray(bits, dtype=bool)
    lead = bits.shape[:-2]
    flat = bits.reshape(-1, bits.shape[-2] * bits.shape[-1])
    if flat.shape[1] != 64:
        raise ValueError(f"expected 64 bits per hash, got {flat.shape[1]}")
    packed = np.packbits(flat, axis=1)  # big-endian bit order within each byte
    return packed.view(">u8").astype(np.uint64).reshape(lead)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Element-wise Hamming distance between uint64 codes (broadcasting)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.bitwise_count(x).astype(np.int64) if hasattr(np, "bitwise_count") else _popcount(x)


def _popcount(x: np.ndarray) -> np.ndarray:
    # numpy < 2.0 fallback: count bits byte by byte through a lookup table
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
    b = np.ascontiguousarray(x, dtype=np.uint64)
    return table[b.view(np.uint8).reshape(*b.shape, 8)].sum(-1)


def _gray(img: Image.Image) -> Image.Image:
    # compute_hashes converts once and passes the grayscale image to every kind
    return img if img.mode == "L" else img.convert("L")


def _grid(gray: Image.Image) -> np.ndarray:
    """The 32x32 grid phash works on, exactly as ``imagehash.phash`` makes it."""
    return np.asarray(gray.resize((_DCT_SIZE, _DCT_SIZE), _LANCZOS))


def _dct_lowfreq(grids: np.ndarray) -> np.ndarray:
    """The 8x8 low-frequency DCT block(s) of 32x32 grid(s) ``(..., 32, 32)``, exactly
    as ``imagehash.phash`` computes it."""
    import scipy.fftpack  # lazily: importing imgaudit should not pay for scipy

    dct = scipy.fftpack.dct(scipy.fftpack.dct(grids, axis=-2), axis=-1)
    return dct[..., :_HASH_SIZE, :_HASH_SIZE]


#: The first 8 rows of the (unnormalised, scipy.fftpack) 32-point DCT-II matrix:
#: ``C @ X @ C.T`` is the low-frequency block of grid X (to rounding).
_DCT8 = 2.0 * np.cos(np.pi * np.arange(_HASH_SIZE)[:, None] * (2 * np.arange(_DCT_SIZE)[None, :] + 1) / (2 * _DCT_SIZE))


def view_blocks(low: np.ndarray) -> np.ndarray:
    """The low-frequency blocks of the 8 dihedral views of ``low`` ``(..., 8, 8)``:
    ``(..., 8, 8, 8)``, views in :data:`DIHEDRAL_VIEWS` order."""
    low = np.asarray(low)
    lt = np.swapaxes(low, -1, -2)
    return np.where(_TRANSPOSED[:, None, None], lt[..., None, :, :], low[..., None, :, :]) * _SIGNS


def _signs_to_bits(blocks: np.ndarray) -> np.ndarray:
    """phash bits of blocks ``(k, 8, 8)``: above the block's own median."""
    flat = blocks.reshape(len(blocks), -1)
    srt = np.sort(flat, axis=1)
    half = flat.shape[1] // 2
    # np.median of an even count, written out (a sort of 64 values is cheaper than
    # np.median's partition machinery): the same value bit for bit
    med = (srt[:, half - 1] + srt[:, half]) / 2.0
    return bits_to_uint64((flat > med[:, None]).reshape(blocks.shape))


def _phash_low(gray: Image.Image) -> np.ndarray:
    return _dct_lowfreq(_grid(gray))


def phash_views(img: Image.Image) -> np.ndarray:
    """phash of the 8 dihedral views from one DCT, ``(8,)`` uint64.

    Column 0 equals ``imagehash.phash(img)`` bit for bit.
    """
    return _signs_to_bits(view_blocks(_phash_low(_gray(img))))


def dct_block(low: np.ndarray) -> np.ndarray:
    """The verification feature of a phash low-frequency block ``(8, 8)``: DC
    zeroed (mean brightness says nothing about content), unit L2 norm (so a dot
    product is a cosine similarity, invariant to contrast), float16. All zero for
    a flat image."""
    b = np.array(low, dtype=np.float64).reshape(_HASH_SIZE * _HASH_SIZE)
    b[0] = 0.0
    norm = math.sqrt(float(np.square(b).sum()))  # not b @ b: no BLAS call per image
    if norm > 0:
        b /= norm
    return b.reshape(_HASH_SIZE, _HASH_SIZE).astype(np.float16)


def _warped_lows(grid: np.ndarray, size: tuple[int, int], borders: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Low-frequency blocks ``(V, 8, 8)`` of resamplings of a phash grid
    (:func:`imgaudit._kernels.warp_dct_kernel`)."""
    from ._kernels import warp_dct_kernel

    w, h = size
    low = np.empty((len(borders), _HASH_SIZE, _HASH_SIZE))
    warp_dct_kernel(grid, max(w, 1) / max(h, 1), borders, angles, _DCT8, low)
    return low


def _jitter_blocks(low: np.ndarray) -> np.ndarray:
    """The :data:`JITTER_VIEWS` blocks ``(8, 8, 8)`` from the unique resamplings' blocks."""
    return low[_JITTER_GRID] * _JITTER_SIGN


def phash_jitter(img: Image.Image) -> np.ndarray:
    """phash of the :data:`JITTER_VIEWS` of an image, ``(8,)`` uint64."""
    return hash_image(img, ("phash_jitter",)).hashes["phash_jitter"]


def phash_center(img: Image.Image) -> np.ndarray:
    """phash of the middle of an image (:data:`CENTER_BORDER` cut off each side) in
    the 8 dihedral views, ``(8,)`` uint64."""
    return hash_image(img, ("phash_center",)).hashes["phash_center"]


@dataclass
class HashOutput:
    """What :func:`hash_image` computes for one image."""

    hashes: dict[str, np.ndarray]  # {kind: (8,) uint64}
    dct: np.ndarray | None  # (8, 8) float16 (:func:`dct_block`), when phash was computed


def hash_image(img: Image.Image, kinds: Iterable[str] = ("phash",)) -> HashOutput:
    """Hashes of one image, sharing phash's grid and DCT between ``phash`` and
    ``phash_jitter`` and ``phash_center`` (what the decode pass calls).

    Parameters
    ----------
    img
        The decoded image (any mode; converted to grayscale as imagehash does).
    kinds
        Hash kinds among :data:`HASH_KINDS`.

    Returns
    -------
    HashOutput
        ``hashes`` as :func:`compute_hashes`; ``dct``: the :func:`dct_block` of
        phash's identity view when a phash kind is among ``kinds``.
    """
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in HASH_KINDS]
    if unknown:
        raise ValueError(f"unknown hash kind {unknown[0]!r}; choose from {list(HASH_KINDS)}")
    gray = _gray(img)
    out: dict[str, np.ndarray] = {}
    dct = None
    family = [k for k in _PHASH_FAMILY if k in kinds]
    if family:
        from ._kernels import phash_family_kernel

        grid = _grid(gray)
        low = _dct_lowfreq(grid)  # scipy's DCT, as imagehash: column 0 is its hash
        w, h = gray.size
        bits = np.zeros(3 * len(DIHEDRAL_VIEWS), dtype=np.uint64)
        feat = np.empty((_HASH_SIZE, _HASH_SIZE))
        # one compiled call for the rest: a dozen small numpy operations per image
        # cost several times their isolated timings inside the decode loop
        phash_family_kernel(
            low, grid, max(w, 1) / max(h, 1), _WARP_BORDERS, _WARP_ANGLES, _DCT8,
            _VIEW_T, _VIEW_SU, _VIEW_SV, _JITTER_GRID, _JITTER_FLIP,
            "phash" in kinds, "phash_jitter" in kinds, "phash_center" in kinds, bits, feat,
        )  # fmt: skip
        dct = feat.astype(np.float16)
        for k, kind in enumerate(family):
            out[kind] = bits[8 * k : 8 * (k + 1)].copy()
    for kind in kinds:
        if kind not in out:
            out[kind] = _other_kinds()[kind](gray)
    return HashOutput({k: out[k] for k in kinds}, dct)


def _imagehash_kind(fn: Callable[[Image.Image], object]) -> Callable[[Image.Image], np.ndarray]:
    def views(img: Image.Image) -> np.ndarray:
        gray = _gray(img)
        out = np.empty(len(DIHEDRAL_VIEWS), dtype=np.uint64)
        for k, name in enumerate(DIHEDRAL_VIEWS):
            h = fn(apply_view(gray, name))
            out[k] = bits_to_uint64(h.hash)  # type: ignore[attr-defined]
        return out

    return views


def _build_kinds() -> dict[str, Callable[[Image.Image], np.ndarray]]:
    import imagehash

    return {
        "dhash": _imagehash_kind(imagehash.dhash),
        "whash": _imagehash_kind(imagehash.whash),
        "ahash": _imagehash_kind(imagehash.average_hash),
    }


#: The selectable hash kinds.
HASH_KINDS: tuple[str, ...] = ("phash", "phash_jitter", "phash_center", "dhash", "whash", "ahash")
#: The kinds computed from phash's grid, in the order their bits are packed.
_PHASH_FAMILY: tuple[str, ...] = ("phash", "phash_jitter", "phash_center")
_KIND_FNS: dict[str, Callable[[Image.Image], np.ndarray]] = {}


def _other_kinds() -> dict[str, Callable[[Image.Image], np.ndarray]]:
    if not _KIND_FNS:
        _KIND_FNS.update(_build_kinds())
    return _KIND_FNS


def compute_hashes(img_rgb: Image.Image, kinds: Iterable[str] = ("phash",)) -> dict[str, np.ndarray]:
    """Perceptual hashes of the 8 dihedral views of one image.

    Parameters
    ----------
    img_rgb
        The decoded image (any mode; converted to grayscale as imagehash does).
    kinds
        Hash kinds among :data:`HASH_KINDS`. ``phash_jitter`` columns follow
        :data:`JITTER_VIEWS` instead of the dihedral views.

    Returns
    -------
    dict
        ``{kind: (8,) uint64}``, columns in :data:`DIHEDRAL_VIEWS` order
        (:data:`JITTER_VIEWS` for ``phash_jitter``).

    Example
    -------
    >>> from PIL import Image
    >>> compute_hashes(Image.new("RGB", (40, 30), "gray"), ["phash", "dhash"])["dhash"].shape
    (8,)
    """
    return hash_image(img_rgb, kinds).hashes
