"""Compiled per-image loops of the decode pass (numba).

- :func:`stats_kernel`: the statistics of :func:`imgaudit.decode.image_stats`. One
  pass over the pixels builds the grey and chroma histograms; a second over the
  small grey image gives the Laplacian's and the image's standard deviations. The
  same in numpy takes ~20 array operations of ~10-40 us each on a decode-scale
  image (a fifth of the decode pass's per-image cost).
- :func:`phash_family_kernel`: after phash's exact DCT, everything its kinds need
  (:mod:`imgaudit.hashing`): the 8 dihedral views' bits, the bilinear resamplings
  of the 32x32 grid behind the ``phash_jitter`` and ``phash_center`` views
  (:func:`warp_kernel`, :func:`warp_dct_kernel`) and their bits, and the DCT
  feature.

Imported lazily (numba's import costs ~0.3 s): the decode pass loads it in the
parent before it forks its workers, so they inherit it compiled.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def stats_kernel(rgb, gray, small):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``(brightness_mean, p05, p99, chroma_mean, chroma_p99, gray_std, sharpness, entropy)``.

    ``rgb`` (h, w, 3) and ``gray`` (h, w) uint8 at decode scale; ``small`` (hs, ws)
    uint8, the grey image at the sharpness scale. Percentiles are the first grey
    level whose cumulative count reaches ``q * n`` (numpy's ``searchsorted`` on
    the cumulative histogram); all but sharpness are divided by 255 (entropy by 8
    bits).
    """
    h, w = gray.shape
    n = h * w
    hist = np.zeros(256, np.int64)
    chist = np.zeros(256, np.int64)
    for y in range(h):
        for x in range(w):
            hist[gray[y, x]] += 1
            r = rgb[y, x, 0]
            g = rgb[y, x, 1]
            b = rgb[y, x, 2]
            mx = max(r, max(g, b))
            mn = min(r, min(g, b))
            chist[mx - mn] += 1
    total = 0.0
    ctotal = 0.0
    for v in range(256):
        total += v * hist[v]
        ctotal += v * chist[v]
    mean = total / n
    var = 0.0
    ent = 0.0
    for v in range(256):
        if hist[v] > 0:
            d = v - mean
            var += d * d * hist[v]
            p = hist[v] / n
            ent -= p * math.log2(p)
    var /= n

    def first_reaching(hh, target):  # type: ignore[no-untyped-def]
        c = 0
        for v in range(256):
            c += hh[v]
            if c >= target:
                return v
        return 256

    p05 = first_reaching(hist, 0.05 * n)
    p99 = first_reaching(hist, 0.99 * n)
    cp99 = first_reaching(chist, 0.99 * n)

    hs, ws = small.shape
    s1 = 0.0
    s2 = 0.0
    for y in range(hs):
        for x in range(ws):
            v = float(small[y, x])
            s1 += v
            s2 += v * v
    m = hs * ws
    smean = s1 / m
    sstd = math.sqrt(max(s2 / m - smean * smean, 0.0))
    if hs < 3 or ws < 3:
        sharp = np.nan
    elif sstd <= 0:
        sharp = 0.0
    else:
        l1 = 0.0
        l2 = 0.0
        for y in range(1, hs - 1):
            for x in range(1, ws - 1):
                lap = 4.0 * small[y, x] - small[y - 1, x] - small[y + 1, x] - small[y, x - 1] - small[y, x + 1]
                l1 += lap
                l2 += lap * lap
        k = (hs - 2) * (ws - 2)
        lm = l1 / k
        sharp = math.sqrt(max(l2 / k - lm * lm, 0.0)) / sstd
    return (
        mean / 255.0,
        p05 / 255.0,
        p99 / 255.0,
        ctotal / n / 255.0,
        cp99 / 255.0,
        math.sqrt(var) / 255.0,
        sharp,
        max(0.0, ent / 8.0),
    )


@numba.njit(cache=True, nogil=True)
def warp_dct_kernel(grid, aspect, borders, angles, dct8, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The low-frequency DCT blocks ``out (V, k, k)`` of the :func:`warp_kernel`
    resamplings of ``grid``: ``dct8 @ warped @ dct8.T`` with ``dct8`` the first k
    rows of the DCT-II matrix. Written out here, as ~10^4 multiply-adds per view:
    numpy's matmul would hand these tiny products to a BLAS whose idle threads
    then spin on the cores the other decode workers need."""
    n = grid.shape[0]
    k = dct8.shape[0]
    warped = np.empty((borders.shape[0], n, n))
    warp_kernel(grid, aspect, borders, angles, warped)
    tmp = np.empty((k, n))
    for v in range(warped.shape[0]):
        # row-major order (the innermost loop runs along a row of ``warped``, so it
        # vectorises); every tmp[u, c] still sums over r in order: same numbers
        tmp[:, :] = 0.0
        for u in range(k):
            for r in range(n):
                a = dct8[u, r]
                for c in range(n):
                    tmp[u, c] += a * warped[v, r, c]
        for u in range(k):
            for w in range(k):
                acc = 0.0
                for c in range(n):
                    acc += tmp[u, c] * dct8[w, c]
                out[v, u, w] = acc


@numba.njit(cache=True, nogil=True)
def warp_kernel(grid, aspect, borders, angles, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Resample a square grid ``(n, n)`` into ``out (V, n, n)``: view ``v`` is the
    image rotated by ``angles[v]`` radians counter-clockwise about its centre (as
    PIL's ``rotate``: samples from outside the picture are 0), then cropped by
    ``borders[v]`` of its size on each side, then resized back to ``n x n``.

    ``aspect`` is the picture's width / height: the grid squashes it to a square,
    so a rotation of the picture is a shear of the grid. Bilinear; edge pixels
    are extended by half a pixel (the grid's pixel centres do not reach the border).
    """
    n = grid.shape[0]
    for v in range(out.shape[0]):
        b = borders[v]
        c = math.cos(angles[v])
        s = math.sin(angles[v])
        # the map from view pixel (i, j) to grid coordinates (gr, gc) is affine:
        # view pixel centre relative to the picture centre (in units of its height)
        # xv = (b + (j + .5) / n * (1 - 2b) - .5) * aspect, yv likewise in i; then the
        # inverse rotation (y points down) and back to grid pixels
        step = (1.0 - 2.0 * b) / n
        x0 = (b + 0.5 * step - 0.5) * aspect
        y0 = b + 0.5 * step - 0.5
        gc0 = ((c * x0 - s * y0) / aspect + 0.5) * n - 0.5
        gr0 = ((s * x0 + c * y0) + 0.5) * n - 0.5
        dgc_dj = c * step * n
        dgc_di = -s * step / aspect * n
        dgr_dj = s * step * aspect * n
        dgr_di = c * step * n
        for i in range(n):
            for j in range(n):
                gc = gc0 + dgc_dj * j + dgc_di * i
                gr = gr0 + dgr_dj * j + dgr_di * i
                if gc < -0.5 or gc > n - 0.5 or gr < -0.5 or gr > n - 0.5:
                    out[v, i, j] = 0.0
                    continue
                gc = min(max(gc, 0.0), n - 1.0)
                gr = min(max(gr, 0.0), n - 1.0)
                c0 = min(int(gc), n - 2)
                r0 = min(int(gr), n - 2)
                fc = gc - c0
                fr = gr - r0
                top = grid[r0, c0] * (1.0 - fc) + grid[r0, c0 + 1] * fc
                bot = grid[r0 + 1, c0] * (1.0 - fc) + grid[r0 + 1, c0 + 1] * fc
                out[v, i, j] = top * (1.0 - fr) + bot * fr


@numba.njit(cache=True, nogil=True)
def _median_bits(block, out, k):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``out[k]`` = phash bits of an (n, n) block: above the median of its values
    (np.median's even-count mean of the two middle values), row-major, MSB first."""
    flat = block.ravel()
    srt = np.sort(flat)
    half = flat.shape[0] // 2
    med = (srt[half - 1] + srt[half]) / 2.0
    code = np.uint64(0)
    for i in range(flat.shape[0]):
        code = code << np.uint64(1)
        if flat[i] > med:
            code = code | np.uint64(1)
    out[k] = code


@numba.njit(cache=True, nogil=True)
def phash_family_kernel(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    low, grid, aspect, borders, angles, dct8, view_t, view_su, view_sv, jit_grid, jit_flip,
    want_views, want_jitter, want_center, bits, feat,
):
    """Everything phash's kinds need after the grid's exact DCT, in one call.

    ``low``: the grid's 8x8 DCT block (imagehash's numbers); ``bits`` (24,) gets
    the 8 dihedral views' codes (``want_views``), then the 8 jitter views'
    (resamplings ``jit_grid[k]`` of ``borders``/``angles``, mirrored where
    ``jit_flip``), then the centre crop's 8 dihedral views (the last resampling);
    ``feat`` (8, 8) the DC-free unit-norm block. A view of a block: transpose when
    ``view_t[v]``, then negate odd rows when ``view_su[v]``, odd columns when
    ``view_sv[v]`` (see :mod:`imgaudit.hashing`).
    """
    k = low.shape[0]
    norm = 0.0
    for u in range(k):
        for w in range(k):
            if u + w > 0:
                norm += low[u, w] * low[u, w]
    norm = math.sqrt(norm)
    for u in range(k):
        for w in range(k):
            feat[u, w] = low[u, w] / norm if (norm > 0 and u + w > 0) else 0.0
    blk = np.empty((k, k))

    def view_into(src, v, dst):  # type: ignore[no-untyped-def]
        for u in range(k):
            for w in range(k):
                x = src[w, u] if view_t[v] else src[u, w]
                if view_su[v] and u % 2 == 1:
                    x = -x
                if view_sv[v] and w % 2 == 1:
                    x = -x
                dst[u, w] = x

    slot = 0
    if want_views:
        for v in range(8):
            view_into(low, v, blk)
            _median_bits(blk, bits, slot)
            slot += 1
    if want_jitter or want_center:
        lows = np.empty((borders.shape[0], k, k))
        warp_dct_kernel(grid, aspect, borders, angles, dct8, lows)
        if want_jitter:
            for j in range(jit_grid.shape[0]):
                src = lows[jit_grid[j]]
                for u in range(k):
                    for w in range(k):
                        x = src[u, w]
                        blk[u, w] = -x if (jit_flip[j] and w % 2 == 1) else x
                _median_bits(blk, bits, slot)
                slot += 1
        if want_center:
            for v in range(8):
                view_into(lows[borders.shape[0] - 1], v, blk)
                _median_bits(blk, bits, slot)
                slot += 1
