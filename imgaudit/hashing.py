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
rotated and cropped, and mirrored variants. A near-duplicate search that indexes
these next to the dihedral views finds a copy that was cropped or rotated a little
(``benchmarks/duplicates.py`` measures on- and off-grid amounts).

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

from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

__all__ = [
    "DIHEDRAL_VIEWS",
    "DIHEDRAL_TRANSPOSE",
    "HASH_KINDS",
    "JITTER_VIEWS",
    "JITTER_SPECS",
    "phash_jitter",
    "apply_view",
    "compute_hashes",
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
_JITTER_SIDE = 64  # working short side of phash_jitter
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


def _dct_lowfreq(grids: np.ndarray) -> np.ndarray:
    """The 8x8 low-frequency DCT block(s) of 32x32 grid(s) ``(..., 32, 32)``, exactly
    as ``imagehash.phash`` computes it."""
    import scipy.fftpack  # lazily: importing imgaudit should not pay for scipy

    dct = scipy.fftpack.dct(scipy.fftpack.dct(grids, axis=-2), axis=-1)
    return dct[..., :_HASH_SIZE, :_HASH_SIZE]


def phash_views(img: Image.Image) -> np.ndarray:
    """phash of the 8 dihedral views from one DCT, ``(8,)`` uint64.

    Column 0 equals ``imagehash.phash(img)`` bit for bit.
    """
    low = _dct_lowfreq(np.asarray(_gray(img).resize((_DCT_SIZE, _DCT_SIZE), _LANCZOS)))
    blocks = np.where(_TRANSPOSED[:, None, None], low.T[None], low[None]) * _SIGNS
    med = np.median(blocks.reshape(len(DIHEDRAL_VIEWS), -1), axis=1)
    return bits_to_uint64(blocks > med[:, None, None])


def phash_jitter(img: Image.Image) -> np.ndarray:
    """phash of the :data:`JITTER_VIEWS` of an image, ``(8,)`` uint64."""
    gray = _gray(img)
    w, h = gray.size
    # work at a short side of 64 (aspect kept, so rotation angles stay true): the
    # views end at 32x32 anyway, and rotating a decode-scale image costs far more
    k = _JITTER_SIDE / min(w, h)
    if k < 1:
        # a box reduce to >= 2x the working size first: Lanczos from a large image is
        # the costliest step of the decode pass, and these views need no bit-exactness
        factor = min(w, h) // (2 * _JITTER_SIDE)
        if factor >= 2:
            gray = gray.reduce(factor)
        w, h = max(1, round(w * k)), max(1, round(h * k))
        gray = gray.resize((w, h), _LANCZOS)
    flip_h = DIHEDRAL_VIEWS.index("flip_h")
    grids: dict[tuple[float, float], np.ndarray] = {}
    rotated: dict[float, Image.Image] = {0.0: gray}
    for _, border, angle, _mirror in JITTER_SPECS:
        if (border, angle) in grids:
            continue  # the mirrored view reuses the grid (its DCT signs flip)
        if angle not in rotated:
            rotated[angle] = gray.rotate(angle, resample=Image.Resampling.BILINEAR)
        src = rotated[angle]
        box = (w * border, h * border, w * (1 - border), h * (1 - border)) if border else None
        grids[(border, angle)] = np.asarray(src.resize((_DCT_SIZE, _DCT_SIZE), _LANCZOS, box=box))
    keys = list(grids)
    dct = _dct_lowfreq(np.stack([grids[k] for k in keys]))
    low = {k: dct[n] for n, k in enumerate(keys)}
    arr = np.stack([low[(b, a)] * _SIGNS[flip_h] if m else low[(b, a)] for _, b, a, m in JITTER_SPECS])
    med = np.median(arr.reshape(len(arr), -1), axis=1)
    return bits_to_uint64(arr > med[:, None, None])


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
        "phash": phash_views,
        "phash_jitter": phash_jitter,
        "dhash": _imagehash_kind(imagehash.dhash),
        "whash": _imagehash_kind(imagehash.whash),
        "ahash": _imagehash_kind(imagehash.average_hash),
    }


#: The selectable hash kinds.
HASH_KINDS: tuple[str, ...] = ("phash", "phash_jitter", "dhash", "whash", "ahash")
_KIND_FNS: dict[str, Callable[[Image.Image], np.ndarray]] = {}


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
    if not _KIND_FNS:
        _KIND_FNS.update(_build_kinds())
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in _KIND_FNS]
    if unknown:
        raise ValueError(f"unknown hash kind {unknown[0]!r}; choose from {list(HASH_KINDS)}")
    # every kind starts from the same grayscale image (as imagehash does): convert once
    gray = img_rgb.convert("L") if kinds else img_rgb
    return {kind: _KIND_FNS[kind](gray) for kind in kinds}
