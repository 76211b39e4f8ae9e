"""Exact Hamming-radius search over 64-bit codes that scales to millions.

:func:`radius_pairs` returns every pair of codes within a Hamming radius, exactly,
without an N^2 loop or N^2 memory. It uses multi-index hashing (Norouzi et al.,
"Fast search in Hamming space with multi-index hashing", CVPR 2012):

- the 64 bits are cut into ``m`` disjoint substrings; if two codes are within
  ``radius`` bits, by pigeonhole at least one substring differs in at most
  ``q = radius // m`` bits;
- one table per substring sorts the codes by that substring (a CSR layout: an
  offsets array over all ``2**b`` substring values plus the codes in key order, so
  memory is linear in N plus ``m * 2**b`` offsets);
- a query enumerates the substring values within ``q`` flips of its own, scans
  those buckets and verifies each candidate with a full 64-bit popcount. A pair is
  reported only from the first table whose substring matches, so no duplicates.

``m`` is chosen per call by a cost model (bucket lookups are random memory reads,
candidate checks are sequential popcounts); for small inputs a blocked brute-force
kernel is cheaper and is used instead. Both inner loops are numba-compiled and
parallel over queries; output is gathered per block without Python loops over pairs.

``benchmarks/duplicates.py`` measures it against numpy brute force and faiss.

Dihedral mode: pass ``codes`` of shape ``(N, V)`` (the V views of each image, column
0 = as displayed). A pair's distance is the least, over views v and both
directions, of d(view v of one image, identity of the other), so a mirrored or
rotated copy is found at the distance of its best-aligned view. The tables then
index all ``N * V`` view codes and are queried with the N identities (cheaper than
``N * V`` queries: lookups dominate and the buckets stay small).

Example
-------
>>> import numpy as np
>>> codes = np.array([0, 1, 3, 2**63], dtype=np.uint64)
>>> i, j, d = radius_pairs(codes, radius=2)
>>> list(zip(i.tolist(), j.tolist(), d.tolist()))
[(0, 1, 1), (0, 2, 2), (1, 2, 1)]
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

logger = logging.getLogger(__name__)

__all__ = ["radius_pairs", "brute_force_pairs", "MultiIndex", "support_kernel"]

#: Largest substring width: the offsets array of a table has ``2**b + 1`` int64s.
_MAX_BITS = 24
#: Relative cost of one bucket lookup (a random read) vs one candidate check.
_LOOKUP_COST = 4.0
#: Queries per kernel call (bounds the temporary output buffers).
_QUERY_CHUNK = 1 << 16
#: Sub-blocks per kernel call: the unit of parallel work and of output buffering.
_N_SUB = 64


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
    """LLVM ctpop on a uint64 (one POPCNT instruction on x86-64)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


@numba.njit(parallel=True, cache=True, nogil=True)
def _mih_kernel(
    q_codes, q_ids, codes, ids, views, offsets, shifts, submasks, flips, nflips, q, radius,
    self_join, cap, out_i, out_j, out_d, counts,
):  # pragma: no cover - compiled
    n_sub = counts.shape[0]
    nq = q_codes.shape[0]
    m = shifts.shape[0]
    per = (nq + n_sub - 1) // n_sub
    for s in numba.prange(n_sub):
        lo = s * per
        hi = min(nq, lo + per)
        c = 0
        for qi in range(lo, hi):
            x = q_codes[qi]
            a = q_ids[qi]
            for t in range(m):
                key = (x >> shifts[t]) & submasks[t]
                for k in range(nflips[t]):
                    kk = key ^ flips[t, k]
                    for p in range(offsets[t, kk], offsets[t, kk + 1]):
                        b = ids[t, p] // views
                        if self_join:
                            if b <= a:
                                continue
                        elif b == a:
                            continue
                        xr = x ^ codes[t, p]
                        d = _popcount(xr)
                        if d > radius:
                            continue
                        # report a pair only from the first table where it collides
                        seen = False
                        for tt in range(t):
                            if _popcount((xr >> shifts[tt]) & submasks[tt]) <= q:
                                seen = True
                                break
                        if seen:
                            continue
                        if c < cap:
                            out_i[s, c] = a
                            out_j[s, c] = b
                            out_d[s, c] = d
                        c += 1
        counts[s] = c


@numba.njit(parallel=True, cache=True, nogil=True)
def _brute_kernel(
    q_codes, q_ids, codes, radius, self_join, cap, out_i, out_j, out_d, counts
):  # pragma: no cover - compiled
    n_sub = counts.shape[0]
    nq = q_codes.shape[0]
    n = codes.shape[0]
    per = (nq + n_sub - 1) // n_sub
    for s in numba.prange(n_sub):
        lo = s * per
        hi = min(nq, lo + per)
        c = 0
        for qi in range(lo, hi):
            x = q_codes[qi]
            a = q_ids[qi]
            start = a + 1 if self_join else 0
            for b in range(start, n):
                if b == a:
                    continue
                d = _popcount(x ^ codes[b])
                if d <= radius:
                    if c < cap:
                        out_i[s, c] = a
                        out_j[s, c] = b
                        out_d[s, c] = d
                    c += 1
        counts[s] = c


@numba.njit(cache=True, nogil=True)
def support_kernel(indptr, indices, i, j, cap):  # pragma: no cover - compiled
    """Closed-neighbourhood overlap of each edge (see checks.duplicates.edge_support)."""
    out = np.ones(len(i))
    for e in range(len(i)):
        a, b = i[e], j[e]
        da = indptr[a + 1] - indptr[a]
        db = indptr[b + 1] - indptr[b]
        if da > db:
            a, b, da, db = b, a, db, da
        if da > cap:
            continue  # both ends are hubs of a dense cluster: keep the edge
        # closed neighbourhoods: N[x] = neighbours of x plus x itself
        common = 2  # a and b are in both N[a] and N[b]
        lo, hi = indptr[b], indptr[b + 1]
        for p in range(indptr[a], indptr[a + 1]):
            k = indices[p]
            if k == b:
                continue
            q = np.searchsorted(indices[lo:hi], k)
            if q < hi - lo and indices[lo + q] == k:
                common += 1
        out[e] = common / (da + 1)
    return out


def _n_within(bits: int, q: int) -> int:
    return sum(math.comb(bits, k) for k in range(q + 1))


def _split_widths(m: int) -> list[int]:
    base, extra = divmod(64, m)
    return [base + 1] * extra + [base] * (m - extra)


def _plan(n_db: int, radius: int, n_query: int | None = None) -> int | None:
    """Number of substrings minimising the estimated total cost; None = brute force.

    Costs are in candidate checks: brute force checks every database code per
    query; the multi-index pays the table build (offsets over ``2**b`` keys plus a
    sort) and, per query, its bucket lookups and candidate checks.
    """
    nq = n_db if n_query is None else n_query
    best_m, best_cost = None, float(n_db) * nq
    for m in range(2, 17):
        widths = _split_widths(m)
        if widths[0] > _MAX_BITS:
            continue
        q = radius // m
        per_query = sum(_n_within(b, q) * (_LOOKUP_COST + n_db / 2.0**b) for b in widths)
        build = sum(2.0**b + 20.0 * n_db for b in widths)
        cost = nq * per_query + build
        if cost < best_cost:
            best_m, best_cost = m, cost
    return best_m


@dataclass
class MultiIndex:
    """Multi-index hash tables over a database of uint64 codes (built once, queried many)."""

    codes: np.ndarray  # (m, N) uint64, codes in each table's key order
    ids: np.ndarray  # (m, N) int32 (int64 past 2**31 entries), database row of each entry
    offsets: np.ndarray  # (m, 2**bmax + 1) same dtype as ids, bucket starts per table
    shifts: np.ndarray  # (m,) uint64
    submasks: np.ndarray  # (m,) uint64
    radius: int

    @classmethod
    def build(cls, db: np.ndarray, m: int, radius: int) -> MultiIndex:
        db = np.ascontiguousarray(db, dtype=np.uint64)
        widths = _split_widths(m)
        shifts = np.cumsum([0, *widths[:-1]]).astype(np.uint64)
        submasks = np.array([(1 << w) - 1 for w in widths], dtype=np.uint64)
        size = 1 << max(widths)
        # 32-bit ids and offsets halve the memory the random bucket reads touch
        itype = np.int32 if len(db) < 2**31 - 1 else np.int64
        codes = np.empty((m, len(db)), dtype=np.uint64)
        ids = np.empty((m, len(db)), dtype=itype)
        offsets = np.zeros((m, size + 1), dtype=itype)
        for t in range(m):
            keys = (db >> shifts[t]) & submasks[t]
            order = np.argsort(keys, kind="stable")
            codes[t] = db[order]
            ids[t] = order
            offsets[t, 1:] = np.cumsum(np.bincount(keys.astype(np.int64), minlength=size))
        return cls(codes, ids, offsets, shifts, submasks, radius)

    @property
    def m(self) -> int:
        return len(self.shifts)

    def flip_masks(self) -> tuple[np.ndarray, np.ndarray]:
        q = self.radius // self.m
        per_table = []
        for w in self.submasks.tolist():
            bits = int(w).bit_length()
            masks = [0]
            for k in range(1, q + 1):
                masks += [sum(1 << b for b in combo) for combo in itertools.combinations(range(bits), k)]
            per_table.append(masks)
        width = max(len(x) for x in per_table)
        flips = np.zeros((self.m, width), dtype=np.uint64)
        for t, masks in enumerate(per_table):
            flips[t, : len(masks)] = masks
        return flips, np.array([len(x) for x in per_table], dtype=np.int64)


def _run_chunked(kernel_call, nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Call a kernel on query chunks, growing the per-block buffers when they overflow."""
    parts_i, parts_j, parts_d = [], [], []
    cap = 256
    for lo in range(0, nq, _QUERY_CHUNK):
        hi = min(nq, lo + _QUERY_CHUNK)
        while True:
            out_i = np.empty((_N_SUB, cap), dtype=np.int64)
            out_j = np.empty((_N_SUB, cap), dtype=np.int64)
            out_d = np.empty((_N_SUB, cap), dtype=np.int64)
            counts = np.zeros(_N_SUB, dtype=np.int64)
            kernel_call(lo, hi, cap, out_i, out_j, out_d, counts)
            if counts.max(initial=0) <= cap:
                break
            cap = int(counts.max()) + 64  # rare: a block had many near pairs; redo it
        keep = np.arange(cap)[None, :] < counts[:, None]
        parts_i.append(out_i[keep])
        parts_j.append(out_j[keep])
        parts_d.append(out_d[keep])
    if not parts_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    return np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_d)


def _min_per_pair(
    i: np.ndarray, j: np.ndarray, d: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make pairs unordered (i < j) and keep the least distance of each pair."""
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo * np.int64(n) + hi
    order = np.lexsort((d, key))
    key, d = key[order], d[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    key, d = key[first], d[first]
    return key // n, key % n, d


def radius_pairs(
    codes: np.ndarray,
    radius: int,
    *,
    method: str = "auto",
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of codes within Hamming distance ``radius``, exactly.

    Parameters
    ----------
    codes
        ``(N,)`` uint64 codes, or ``(N, V)`` for the dihedral mode: the V views of
        each image, column 0 the image as displayed. Views are queried against
        column 0 and a pair's distance is the least over views and directions.
    radius
        Maximum Hamming distance (inclusive), 0..64.
    method
        ``"auto"`` (cost model), ``"mih"`` (multi-index hashing) or ``"brute"``.
    n_threads
        numba threads; ``None`` keeps numba's setting (all cores).

    Returns
    -------
    i, j, d
        int64 arrays: pairs with ``i < j`` sorted by ``(i, j)``, and their distance.

    Example
    -------
    >>> import numpy as np
    >>> radius_pairs(np.array([5, 5, 6], dtype=np.uint64), 0)[0].tolist()
    [0]
    """
    codes = np.asarray(codes)
    if codes.dtype != np.uint64:
        raise TypeError(f"codes must be uint64, got {codes.dtype}")
    if codes.ndim not in (1, 2):
        raise ValueError(f"codes must be (N,) or (N, V), got shape {codes.shape}")
    if not 0 <= radius <= 64:
        raise ValueError(f"radius must be in 0..64, got {radius}")
    if method not in ("auto", "mih", "brute"):
        raise ValueError(f"method must be 'auto', 'mih' or 'brute', got {method!r}")
    n = codes.shape[0]
    empty = np.empty(0, dtype=np.int64)
    if n < 2:
        return empty, empty.copy(), empty.copy()
    dihedral = codes.ndim == 2 and codes.shape[1] > 1
    n_views = codes.shape[1] if dihedral else 1
    db = np.ascontiguousarray(codes[:, 0] if codes.ndim == 2 else codes)  # the identities
    q_codes = db
    q_ids = np.arange(n, dtype=np.int64)
    self_join = not dihedral
    m = _plan(n * n_views, radius, n)
    if method == "brute":
        m = None
    elif method == "mih" and m is None:
        m = 4
    if dihedral and m is None:
        # the brute kernel compares identities only: give it every view as a query
        q_codes = np.ascontiguousarray(codes.reshape(-1))
        q_ids = np.repeat(q_ids, n_views)
    old_threads = numba.get_num_threads()
    if n_threads is not None:
        numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        if m is None:
            logger.debug("radius_pairs: brute force over %d codes", n)

            def call(lo, hi, cap, oi, oj, od, cnt):  # type: ignore[no-untyped-def]
                _brute_kernel(q_codes[lo:hi], q_ids[lo:hi], db, radius, self_join, cap, oi, oj, od, cnt)

        else:
            # the tables hold every view of every image (entry e is image e // V)
            # and are queried with identities only: one query per image and the
            # least distance over views, in both directions once pairs are merged
            index = MultiIndex.build(codes.reshape(-1), m, radius)
            flips, nflips = index.flip_masks()
            q = radius // m
            logger.debug("radius_pairs: multi-index m=%d q=%d over %d codes", m, q, n)

            def call(lo, hi, cap, oi, oj, od, cnt):  # type: ignore[no-untyped-def]
                _mih_kernel(
                    q_codes[lo:hi], q_ids[lo:hi], index.codes, index.ids, n_views, index.offsets,
                    index.shifts, index.submasks, flips, nflips, q, radius, self_join,
                    cap, oi, oj, od, cnt,
                )

        i, j, d = _run_chunked(call, len(q_codes))
    finally:
        if n_threads is not None:
            numba.set_num_threads(old_threads)
    if dihedral or len(i):
        i, j, d = _min_per_pair(i, j, d, n)
    return i, j, d


def brute_force_pairs(
    codes: np.ndarray, radius: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference numpy brute force: pairs ``i < j`` within ``radius``.

    Blocked so that memory stays ``O(N)`` (about 2**25 distances per block).
    ``rows`` restricts the left side to those rows (to check a sample of a large
    set); the right side is always every code. Dihedral ``(N, V)`` input is
    supported with the same distance as :func:`radius_pairs`.
    """
    codes = np.asarray(codes, dtype=np.uint64)
    views = codes if codes.ndim == 2 else codes[:, None]
    db = views[:, 0]
    n = len(db)
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    block = max(1, (1 << 25) // max(n, 1))
    out_i, out_j, out_d = [], [], []
    for lo in range(0, len(rows), block):
        r = rows[lo : lo + block]
        dist = np.full((len(r), n), 255, dtype=np.uint8)
        for v in range(views.shape[1]):
            # both directions: view v of the row vs every identity, and view v of
            # every image vs the row's identity
            np.minimum(dist, np.bitwise_count(views[r, v][:, None] ^ db[None, :]), out=dist)
            if v:
                np.minimum(dist, np.bitwise_count(db[r][:, None] ^ views[None, :, v]), out=dist)
        dist[np.arange(len(r)), r] = 255  # no self pairs
        a, b = np.nonzero(dist <= radius)
        out_i.append(r[a])
        out_j.append(b)
        out_d.append(dist[a, b].astype(np.int64))
    if not out_i:
        empty = np.empty(0, np.int64)
        return empty, empty.copy(), empty.copy()
    return _min_per_pair(np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d), n)
