"""Tests of imgaudit.neighbors: exact radius search, plain and dihedral."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imgaudit.neighbors import _plan, brute_force_pairs, radius_pairs


def _codes_with_planted(n: int, n_pairs: int, max_bits: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    src = rng.choice(n, n_pairs, replace=False)
    dst = rng.choice(n, n_pairs, replace=False)
    for a, b in zip(src, dst, strict=True):
        flips = rng.choice(64, rng.integers(0, max_bits + 1), replace=False)
        codes[b] = codes[a] ^ np.uint64(sum(1 << int(f) for f in flips))
    return codes


def _naive(codes: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    """Independent reference: a Python double loop over ints (small inputs only)."""
    views = codes if codes.ndim == 2 else codes[:, None]
    out = set()
    for a, b in itertools.combinations(range(len(views)), 2):
        d = min(
            min(bin(int(views[a, v]) ^ int(views[b, 0])).count("1") for v in range(views.shape[1])),
            min(bin(int(views[b, v]) ^ int(views[a, 0])).count("1") for v in range(views.shape[1])),
        )
        if d <= radius:
            out.add((a, b, d))
    return out


def _as_set(res: tuple[np.ndarray, np.ndarray, np.ndarray]) -> set[tuple[int, int, int]]:
    return set(zip(*(x.tolist() for x in res), strict=True))


@pytest.mark.parametrize("radius", [0, 3, 8, 12])
@pytest.mark.parametrize("method", ["auto", "mih", "brute"])
def test_matches_naive_reference(radius: int, method: str) -> None:
    codes = _codes_with_planted(300, 60, 14, seed=radius)
    want = _naive(codes, radius)
    got = radius_pairs(codes, radius, method=method)
    assert _as_set(got) == want
    assert _as_set(brute_force_pairs(codes, radius)) == want
    i, j, _ = got
    assert np.all(i < j)
    assert np.all(np.diff(i * len(codes) + j) > 0)  # sorted, unique


@pytest.mark.parametrize("method", ["mih", "brute"])
def test_dihedral_mode_matches_reference(method: str) -> None:
    rng = np.random.default_rng(7)
    n = 120
    views = rng.integers(0, 2**64 - 1, (n, 8), dtype=np.uint64, endpoint=True)
    # image 5 is "view 3 of image 2" (plus 2 bit flips); image 9 has image 4's identity
    # as its view 6: both directions must be found
    views[5, 0] = views[2, 3] ^ np.uint64(0b101)
    views[9, 6] = views[4, 0]
    want = _naive(views, 8)
    got = radius_pairs(views, 8, method=method)
    assert _as_set(got) == want
    assert {(2, 5, 2), (4, 9, 0)} <= want
    assert _as_set(brute_force_pairs(views, 8)) == want
    # plain mode ignores the views
    assert (2, 5) not in {(a, b) for a, b, _ in _as_set(radius_pairs(views[:, 0], 8))}


def test_larger_set_multi_index_equals_brute_force() -> None:
    codes = _codes_with_planted(30_000, 2_000, 8, seed=3)
    assert _plan(len(codes), 8) is not None  # the multi-index path is the one exercised
    got = radius_pairs(codes, 8)
    sample = np.random.default_rng(0).choice(len(codes), 500, replace=False)
    ref_i, ref_j, ref_d = brute_force_pairs(codes, 8, rows=sample)
    touched = np.isin(got[0], sample) | np.isin(got[1], sample)
    assert _as_set(tuple(x[touched] for x in got)) == _as_set((ref_i, ref_j, ref_d))
    assert len(got[0]) >= 1_900  # the planted pairs (a few may chain or coincide)


def test_many_identical_codes_grow_buffers() -> None:
    codes = np.full(700, 12345, dtype=np.uint64)
    i, j, d = radius_pairs(codes, 2, method="mih")
    assert len(i) == 700 * 699 // 2 and d.max() == 0


def test_edge_cases_and_validation() -> None:
    for n in (0, 1):
        i, j, d = radius_pairs(np.zeros(n, dtype=np.uint64), 4)
        assert len(i) == len(j) == len(d) == 0
    with pytest.raises(TypeError):
        radius_pairs(np.zeros(3, dtype=np.int64), 4)
    with pytest.raises(ValueError):
        radius_pairs(np.zeros(3, dtype=np.uint64), 65)
    with pytest.raises(ValueError):
        radius_pairs(np.zeros(3, dtype=np.uint64), 4, method="faiss")
    i, _, _ = radius_pairs(np.array([1, 1, 3], dtype=np.uint64), 0, n_threads=1)
    assert i.tolist() == [0]


def test_planner_prefers_brute_force_when_small() -> None:
    assert _plan(50, 8) is None
    assert _plan(1_000_000, 8) is not None
