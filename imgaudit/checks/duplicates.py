"""Exact and near duplicates, with the label conflicts and split leaks they reveal.

Two checks:

``exact_duplicates``
    The same file twice (identical bytes, ``records.sha1``) or the same picture
    under two encodings (identical decoded pixels, ``records.pixel_hash``; pixels
    are compared at the decode pass's scale, so in practice this means
    "indistinguishable at that scale": ~128 px for a 1024 px JPEG, where two
    files that differ only in fine detail, e.g. a mild sharpening, can agree).

``near_duplicates``
    Perceptual hashes within a Hamming radius (phash by default), orientation-robust
    by default: the least distance over the 8 dihedral views, so mirrored and
    90/180/270-rotated copies are found; and, by default, jitter views (5% border
    crop, +-5 degree rotations: ``phash_jitter``) catch slightly cropped or rotated
    copies; and, by default, the phash of the middle 70% of each image
    (``phash_center``), compared centre to centre, catches copies that differ only
    in their outer bands (a watermark, a timestamp, a logo, a frame).
    Exact duplicates are always included.
    Optionally, two stages: the exact radius search runs at the looser ``verify_radius``;
    pairs beyond ``radius`` are kept only when phash's real-valued 8x8 DCT blocks
    (the coefficients its 64 bits are the signs of, cached by the decode pass)
    agree, cosine similarity >= ``verify_similarity`` under the best dihedral
    alignment. That recovers copies whose edits (a watermark, a brightness change)
    flipped a few near-median bits, without the false links a looser radius alone
    brings.
    Optionally, pairs whose embeddings (``ctx.oof.embeddings``, shared with the label
    stage) have cosine similarity above a threshold are added: they catch what
    hashes miss (crops, small rotations) at the cost of computing embeddings.
    This check also writes two more issue types over its groups:

    - ``label_conflict``: the image belongs to a duplicate group whose given labels
      disagree (a label error, or two classes that cannot be told apart);
      ``label_conflict_score`` = share of the group's labelled images that carry this
      image's label (lower = more outvoted).
    - ``split_leak``: the image is in a validation/test split and is a duplicate of
      a training image, so validation accuracy overstates generalisation;
      ``split_leak_score`` = Hamming distance to its nearest directly-matched
      training duplicate over ``R + 1`` (R: the largest radius in use; 0 =
      identical copy).

Per-check extras (``<check>_*``):

- ``group``: int64 group id (connected components over the found pairs, numbered
  0.. in the order of each group's keeper path); **-1 for images in no group**
  (singletons and unreadable images: an unreadable image is never a duplicate);
- ``keep``: bool, the one image of its group to keep (largest resolution, then the
  smallest path: a stable tie-break); True for singletons too (they are kept);
- ``distance``: int64 Hamming distance of the image's hash to its keeper's (least
  over views in orientation-robust mode, and over jitter views; 0 for the keeper),
  -1 outside groups. It can exceed the radius: a member linked through other
  copies, or through the centre hash only (a watermarked copy).

``is_<check>_issue`` is True for the redundant copies, i.e. group members that are
not the keeper, so dropping the flagged rows deduplicates the dataset.
``<check>_score`` is the Hamming distance to the nearest directly matched duplicate
(whichever hash matched it) over ``R + 1``, R the largest radius in use (0 =
identical), for group members and 1 outside groups.

Groups are connected components of the found pairs, after dropping similarity
links that merely bridge two otherwise separate clusters (``min_support``): one
false link would otherwise merge two unrelated groups.

``info`` holds the groups (lists of paths, keeper first), their count, the number of
flagged copies and, for near_duplicates, the label-conflict and split-leak groups
and counts.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
import pandas as pd

from ..columns import extra_col, issue_col, score_col
from .base import Check, SkipCheck

if TYPE_CHECKING:
    from ..context import AuditContext

logger = logging.getLogger(__name__)

#: Hash kinds whose 8 columns are dihedral views (``phash_jitter`` is not one).
DIHEDRAL_KINDS = ("phash", "dhash", "whash", "ahash")

#: Splits treated as the training side of a leak; every other split name is evaluation.
TRAIN_SPLITS = frozenset({"train", "training"})

_EMPTY = np.empty(0, dtype=np.int64)


# -- pair and group helpers (vectorised; no Python loops over pairs) -------------------


def equal_value_pairs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` linking rows with equal values (a chain per value: enough for
    connected components, linear in N). ``None``/NaN values never pair."""
    s = pd.Series(values, dtype=object)
    valid = s.notna().to_numpy()
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return _EMPTY, _EMPTY
    codes, _ = pd.factorize(s[valid])
    order = np.argsort(codes, kind="stable")
    same = codes[order][1:] == codes[order][:-1]
    return idx[order][:-1][same], idx[order][1:][same]


def embedding_pairs(
    embeddings: np.ndarray, threshold: float, rows: np.ndarray | None = None, block: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` whose embeddings have cosine similarity >= ``threshold``.

    Blocked matrix products: memory ``block * N``, time ``O(N^2 D)`` (fine up to
    ~10^5 images; this path is off by default).
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if rows is not None:
        x = x[rows]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    out_i, out_j, out_s = [], [], []
    for lo in range(0, len(x), block):
        sim = x[lo : lo + block] @ x.T
        a, b = np.nonzero(sim >= threshold)
        keep = b > a + lo
        out_i.append(a[keep] + lo)
        out_j.append(b[keep])
        out_s.append(sim[a[keep], b[keep]])
    if not out_i:
        return _EMPTY, _EMPTY, np.empty(0, dtype=np.float32)
    i, j, s = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    if rows is not None:
        i, j = rows[i], rows[j]
    return i.astype(np.int64), j.astype(np.int64), s


def edge_support(n: int, i: np.ndarray, j: np.ndarray, cap: int = 256) -> np.ndarray:
    """Overlap coefficient of the closed neighbourhoods of each edge's two ends.

    ``|N[a] & N[b]| / min(|N[a]|, |N[b]|)``: 1 inside a clique or for an isolated
    pair, small for a bridge between two otherwise separate clusters. Edges whose
    ends both have more than ``cap`` neighbours get 1 (bounded cost).
    """
    from scipy.sparse import coo_matrix

    from ..neighbors import support_kernel

    if len(i) == 0:
        return np.ones(0)
    graph = coo_matrix((np.ones(2 * len(i), dtype=np.int8), (np.r_[i, j], np.r_[j, i])), shape=(n, n)).tocsr()
    graph.sum_duplicates()
    graph.sort_indices()
    return support_kernel(graph.indptr.astype(np.int64), graph.indices.astype(np.int64), i, j, cap)


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label per row; rows in no pair get -1 (not renumbered)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(i) == 0:
        return np.full(n, -1, dtype=np.int64)
    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    in_pair = np.zeros(n, dtype=bool)
    in_pair[i] = True
    in_pair[j] = True
    return np.where(in_pair, labels, -1).astype(np.int64)


@dataclasses.dataclass
class Groups:
    """Duplicate groups over N rows."""

    group: np.ndarray  # int64 (N,), -1 outside groups, else 0..G-1 ordered by keeper path
    keep: np.ndarray  # bool (N,)
    keeper: np.ndarray  # int64 (N,), row of the group's keeper (-1 outside groups)
    members: list[np.ndarray]  # rows of each group, keeper first

    @property
    def n_groups(self) -> int:
        return len(self.members)


def make_groups(comp: np.ndarray, area: np.ndarray, paths: np.ndarray) -> Groups:
    """Number groups and choose keepers: largest ``area``, then the smallest path."""
    n = len(comp)
    rows = np.flatnonzero(comp >= 0)
    group = np.full(n, -1, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    keeper = np.full(n, -1, dtype=np.int64)
    if len(rows) == 0:
        return Groups(group, keep, keeper, [])
    # sort members by (component, -area, path): the first of each component is its keeper
    path_rank = np.empty(n, dtype=np.int64)
    path_rank[np.argsort(paths, kind="stable")] = np.arange(n)
    order = rows[np.lexsort((path_rank[rows], -area[rows], comp[rows]))]
    c = comp[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    keepers = order[starts]
    # renumber groups in the order of their keeper's path: stable across runs
    gorder = np.argsort(path_rank[keepers], kind="stable")
    new_id = np.empty(len(keepers), dtype=np.int64)
    new_id[gorder] = np.arange(len(keepers))
    sizes = np.diff(np.r_[starts, len(order)])
    gid_sorted = np.repeat(new_id, sizes)
    group[order] = gid_sorted
    keeper[order] = np.repeat(keepers, sizes)
    keep[order] = False
    keep[keepers] = True
    members_by_old = np.split(order, starts[1:])
    members = [members_by_old[g] for g in gorder]
    return Groups(group, keep, keeper, members)


def _view_distance(codes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least Hamming distance over views, in both directions, between rows a and b."""
    from ..hashing import hamming

    if codes.ndim == 1 or codes.shape[1] == 1:
        db = codes.reshape(len(codes), -1)[:, 0]
        return hamming(db[a], db[b])
    fwd = hamming(codes[a], codes[b, :1]).min(axis=1)
    bwd = hamming(codes[a, :1], codes[b]).min(axis=1)
    return np.minimum(fwd, bwd)


def best_view_similarity(
    dct: np.ndarray, a: np.ndarray, b: np.ndarray, orientation_robust: bool = True, block: int = 65536
) -> np.ndarray:
    """Cosine similarity of the DCT blocks of rows ``a`` and ``b`` (unit-norm, from
    :func:`imgaudit.hashing.dct_block`), the largest over the 8 dihedral views of
    ``a``'s block when ``orientation_robust`` (the views are signed permutations of
    the coefficients, so one direction covers both). Blocked: memory ~2 KB x
    ``block``, whatever the number of pairs."""
    from ..hashing import view_blocks

    out = np.empty(len(a), dtype=np.float32)
    for lo in range(0, len(a), block):
        fa = dct[a[lo : lo + block]].astype(np.float32)
        fb = dct[b[lo : lo + block]].astype(np.float32)
        if orientation_robust:
            views = view_blocks(fa).reshape(len(fa), 8, -1)  # (P, 8 views, 64)
            out[lo : lo + block] = np.einsum("pvk,pk->pv", views, fb.reshape(len(fb), -1)).max(axis=1)
        else:
            out[lo : lo + block] = np.einsum("pk,pk->p", fa.reshape(len(fa), -1), fb.reshape(len(fb), -1))
    return out


def _nearest(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Least pair distance per row (inf for rows in no pair)."""
    best = np.full(n, np.inf)
    np.minimum.at(best, i, d.astype(float))
    np.minimum.at(best, j, d.astype(float))
    return best


# -- the checks ------------------------------------------------------------------------


class _DuplicateCheck(Check):
    """Shared frame-building for both duplicate checks."""

    def _ok_rows(self, ctx: AuditContext) -> np.ndarray:
        return ctx.records["ok"].fillna(False).to_numpy(dtype=bool)

    def _exact_pairs(self, records: pd.DataFrame, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ii, jj = [], []
        for col in ("sha1", "pixel_hash"):
            vals = records[col].to_numpy(dtype=object).copy()
            vals[~ok] = None  # unreadable rows are never duplicates
            a, b = equal_value_pairs(vals)
            ii.append(a)
            jj.append(b)
        return np.concatenate(ii), np.concatenate(jj)

    def _base_frame(
        self, ctx: AuditContext, groups: Groups, nearest: np.ndarray, distance: np.ndarray, scale: float
    ) -> pd.DataFrame:
        name = self.name
        in_group = groups.group >= 0
        score = np.where(in_group, np.clip(nearest / scale, 0.0, 1.0), 1.0)
        score = np.where(np.isfinite(score), score, 1.0)
        return pd.DataFrame(
            {
                issue_col(name): in_group & ~groups.keep,
                score_col(name): score,
                extra_col(name, "group"): groups.group,
                extra_col(name, "keep"): groups.keep,
                extra_col(name, "distance"): np.where(in_group, distance, -1).astype(np.int64),
            },
            index=ctx.paths,
        )

    def _group_info(self, ctx: AuditContext, groups: Groups) -> dict[str, Any]:
        paths = ctx.paths.to_numpy(dtype=object)
        return {
            "groups": [[str(p) for p in paths[m]] for m in groups.members],
            "num_groups": groups.n_groups,
            "num_duplicates": int(sum(len(m) - 1 for m in groups.members)),
        }


def _areas(records: pd.DataFrame) -> np.ndarray:
    w = pd.to_numeric(records["width"], errors="coerce").fillna(0).to_numpy(dtype=float)
    h = pd.to_numeric(records["height"], errors="coerce").fillna(0).to_numpy(dtype=float)
    return w * h


class ExactDuplicates(_DuplicateCheck):
    """Identical files or identical decoded pixels under different paths."""

    name: ClassVar[str] = "exact_duplicates"
    requires: ClassVar[tuple[str, ...]] = ("records",)

    @dataclasses.dataclass
    class Params:
        """No hyperparameters: byte identity (sha1) or pixel identity (pixel_hash)."""

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        records = ctx.records
        ok = self._ok_rows(ctx)
        i, j = self._exact_pairs(records, ok)
        n = len(records)
        groups = make_groups(components(n, i, j), _areas(records), ctx.paths.to_numpy(dtype=str))
        nearest = np.where(groups.group >= 0, 0.0, np.inf)
        frame = self._base_frame(ctx, groups, nearest, np.zeros(n, dtype=np.int64), 1.0)
        self.info = self._group_info(ctx, groups)
        return frame


class NearDuplicates(_DuplicateCheck):
    """Perceptual-hash near duplicates, orientation-robust, with conflicts and leaks."""

    name: ClassVar[str] = "near_duplicates"
    requires: ClassVar[tuple[str, ...]] = ("records", "hashes")
    issue_names: ClassVar[tuple[str, ...] | None] = ("near_duplicates", "label_conflict", "split_leak")

    @dataclasses.dataclass
    class Params:
        """Hyperparameters of ``near_duplicates``.

        Parameters
        ----------
        radius
            Largest Hamming distance (of 64 bits) between two hashes called
            duplicates without further checks. phash sets exactly 32 of its 64
            bits (a median split), so its distances are even and 6 behaves like 7.
            Default 6, chosen on ``benchmarks/duplicates.py`` (2,052 real photo
            crops and variants): the direct false links between distinct crops
            were 10 at radius 6 and 88 at 8 (group precision 0.999 vs 0.972).
        verify_radius
            A second stage, off by default (``None``): pairs with
            ``radius < distance <= verify_radius`` are candidates, kept only when
            their DCT blocks agree (``verify_similarity``). Only with
            ``hash_kind="phash"``. On the benchmark above, ``verify_radius=10``
            kept ~95% of the true pairs at distances 7..10 and ~8% of the false
            ones, but with the centre hash on it changed pairwise F1 by < 0.002
            (the copies it recovers are mostly linked through other copies
            already), so it is not worth its search cost by default.
        verify_similarity
            Cosine similarity of the two images' phash DCT blocks (8x8 low
            frequencies, DC term left out), the larger over the 8 dihedral
            alignments, at or above which a candidate pair is kept (0.85: from
            the same benchmark's distance 7..10 pairs).
        hash_kind
            Which hash of the decode pass to use (must be in the audit's
            ``hash_kinds``): ``phash`` (the most discriminative here), ``dhash``,
            ``whash`` or ``ahash``.
        orientation_robust
            Match mirrored and 90/180/270-rotated copies (least distance over the
            8 dihedral views of the hash).
        jitter
            Also match copies cropped or rotated a little: the ``phash_jitter``
            views (5% border crop, +-5 degree rotations, see
            :data:`imgaudit.hashing.JITTER_VIEWS`) of one image are compared with
            the other's phash, within ``jitter_radius``. Needs ``phash_jitter`` in
            the audit's ``hash_kinds`` (the default); only with ``hash_kind="phash"``.
        jitter_radius
            Hamming radius of the jitter views (default: same as ``radius``).
        center
            Also match images whose centres match (``phash_center``: the middle
            70%, see :data:`imgaudit.hashing.CENTER_BORDER`), within
            ``center_radius``: copies with a watermark, timestamp, logo or frame
            in the outer band. Needs ``phash_center`` in the audit's
            ``hash_kinds`` (the default); only with ``hash_kind="phash"``.
        center_radius
            Hamming radius of the centre hashes. Default 4, chosen on
            ``benchmarks/duplicates.py``: a centre is half the picture, so its
            hash tells distinct plain crops apart less well than the whole
            picture's (false links at radius 4 / 6 / 8: 2 / 18 / 43 more than the
            whole-picture hash alone; every watermarked copy was within 4).
        min_support
            Groups are connected components, so one false link would merge two
            unrelated groups. A similarity link a-b is kept only when
            ``|N[a] & N[b]| / min(|N[a]|, |N[b]|) >= min_support`` (N[x]: x and its
            matches), i.e. it is not a lone bridge between two clusters. Isolated
            pairs and cliques score 1; exact copies are never cut; 0 disables.
            Default 0.75 (the benchmark's group precision: 0.94 without, 0.999 with).
            A long chain of gradual edits may split into several groups.
        embeddings
            Also pair images whose embeddings from the label stage
            (``ctx.oof.embeddings``) have cosine similarity >= ``embedding_threshold``.
            Off by default: it computes out-of-fold embeddings (a backbone pass over
            every image) and its search is quadratic.
        embedding_threshold
            Cosine similarity threshold of the embedding pairs.
        """

        radius: int = 6
        verify_radius: int | None = None
        verify_similarity: float = 0.85
        hash_kind: str = "phash"
        orientation_robust: bool = True
        jitter: bool = True
        jitter_radius: int | None = None
        center: bool = True
        center_radius: int = 4
        min_support: float = 0.75
        embeddings: bool = False
        embedding_threshold: float = 0.95

    def run(self, ctx: AuditContext) -> pd.DataFrame:
        # numba and scipy load here, not when the registry is imported
        from ..neighbors import radius_pairs

        p = cast(NearDuplicates.Params, self.params)
        if p.hash_kind not in DIHEDRAL_KINDS:
            raise ValueError(f"near_duplicates: unknown hash_kind {p.hash_kind!r}; choose from {list(DIHEDRAL_KINDS)}")
        radii = (("radius", p.radius), ("jitter_radius", p.jitter_radius), ("verify_radius", p.verify_radius),
                 ("center_radius", p.center_radius))  # fmt: skip
        for what, r in radii:
            if r is not None and not 0 <= r <= 32:
                raise ValueError(f"near_duplicates: {what} must be in 0..32 bits, got {r}")
        hashes = ctx.hashes
        if p.hash_kind not in hashes:
            raise SkipCheck(
                f"hash kind {p.hash_kind!r} was not computed by the decode pass; add it to the "
                f"audit's hash_kinds (currently {sorted(hashes)})"
            )
        records = ctx.records
        n = len(records)
        ok = self._ok_rows(ctx)
        rows = np.flatnonzero(ok)  # unreadable rows are never duplicates
        codes_all = np.asarray(hashes[p.hash_kind], dtype=np.uint64)
        if not p.orientation_robust:
            codes_all = codes_all[:, :1]
        threads = ctx.config.workers() or None
        dct = ctx.decoded.features.get("phash_dct") if p.hash_kind == "phash" else None
        verify = p.verify_radius is not None and p.verify_radius > p.radius and dct is not None
        if p.verify_radius is not None and p.verify_radius > p.radius and dct is None:
            logger.info("near_duplicates: no phash DCT features; candidates beyond radius are not verified")
        search_radius = int(p.verify_radius) if verify and p.verify_radius is not None else p.radius
        si, sj, sd = radius_pairs(codes_all[rows], search_radius, n_threads=threads)
        n_candidates = n_verified = 0
        if verify and dct is not None:
            cand = sd > p.radius
            n_candidates = int(cand.sum())
            sim = best_view_similarity(dct, rows[si[cand]], rows[sj[cand]], p.orientation_robust)
            ok_cand = sim >= p.verify_similarity
            n_verified = int(ok_cand.sum())
            keep = ~cand
            keep[np.flatnonzero(cand)[ok_cand]] = True
            si, sj, sd = si[keep], sj[keep], sd[keep]
        hi, hj, hd = rows[si], rows[sj], sd
        ei, ej = self._exact_pairs(records, ok)
        parts_i, parts_j, parts_d = [hi, ei], [hj, ej], [hd, np.zeros(len(ei), dtype=np.int64)]
        use_jitter = p.jitter and p.hash_kind == "phash"
        jr = p.radius if p.jitter_radius is None else p.jitter_radius
        if use_jitter and "phash_jitter" not in hashes:
            logger.info("near_duplicates: no phash_jitter hashes; small crops/rotations are not matched")
            use_jitter = False
        dist_codes = codes_all  # views compared when measuring distances to keepers
        if use_jitter:
            jit = np.asarray(hashes["phash_jitter"], dtype=np.uint64)
            with_jitter = np.concatenate([codes_all[:, :1], jit], axis=1)
            ji, jj, jd = radius_pairs(with_jitter[rows], jr, n_threads=threads)
            parts_i.append(rows[ji])
            parts_j.append(rows[jj])
            parts_d.append(jd)
            dist_codes = np.concatenate([codes_all, jit], axis=1)
        use_center = p.center and p.hash_kind == "phash"
        if use_center and "phash_center" not in hashes:
            logger.info("near_duplicates: no phash_center hashes; copies differing at the borders are not matched")
            use_center = False
        n_center_pairs = 0
        if use_center:
            cen = np.asarray(hashes["phash_center"], dtype=np.uint64)
            cen = cen if p.orientation_robust else cen[:, :1]
            ci, cj, cd = radius_pairs(cen[rows], p.center_radius, n_threads=threads)
            n_center_pairs = len(ci)
            parts_i.append(rows[ci])
            parts_j.append(rows[cj])
            parts_d.append(cd)
        scale = float(max(search_radius, jr if use_jitter else 0, p.center_radius if use_center else 0) + 1)
        n_embedding_pairs = 0
        if p.embeddings:
            # the label stage computes embeddings only for a labelled set
            emb = ctx.oof.embeddings if ctx.labels is not None else None
            if emb is None:
                warnings.warn(
                    "near_duplicates: embeddings=True but the label stage produced no embeddings; "
                    "using hashes only",
                    stacklevel=2,
                )
            else:
                emb_ok = rows[np.all(np.isfinite(np.asarray(emb)[rows]), axis=1)]
                a, b, _ = embedding_pairs(emb, p.embedding_threshold, rows=emb_ok)
                n_embedding_pairs = len(a)
                parts_i.append(a)
                parts_j.append(b)
                parts_d.append(_view_distance(dist_codes, a, b))
        i, j, d = np.concatenate(parts_i), np.concatenate(parts_j), np.concatenate(parts_d)
        n_cut = 0
        if p.min_support > 0 and len(i):
            # connected components chain: one false link merges two whole groups, so
            # drop similarity links that bridge otherwise separate clusters (exact
            # copies are never cut)
            exact = np.zeros(len(i), dtype=bool)
            exact[len(hi) : len(hi) + len(ei)] = True
            keep = exact | (edge_support(n, i, j) >= p.min_support)
            n_cut = int((~keep).sum())
            i, j, d = i[keep], j[keep], d[keep]

        groups = make_groups(components(n, i, j), _areas(records), ctx.paths.to_numpy(dtype=str))
        nearest = _nearest(n, i, j, d)
        members = np.flatnonzero(groups.group >= 0)
        distance = np.full(n, -1, dtype=np.int64)
        if len(members):
            distance[members] = _view_distance(dist_codes, members, groups.keeper[members])
        frame = self._base_frame(ctx, groups, nearest, distance, scale)

        info = self._group_info(ctx, groups)
        info.update(
            {
                "radius": p.radius,
                "verify_radius": search_radius if verify else None,
                "verify_similarity": p.verify_similarity if verify else None,
                "num_candidates_verified": n_candidates,
                "num_candidates_kept": n_verified,
                "hash_kind": p.hash_kind,
                "orientation_robust": p.orientation_robust,
                "jitter": use_jitter,
                "num_hash_pairs": int(len(hi)),
                "num_jitter_pairs": int(len(parts_i[2])) if use_jitter else 0,
                "center": use_center,
                "num_center_pairs": int(n_center_pairs),
                "num_embedding_pairs": int(n_embedding_pairs),
                "num_links_cut": n_cut,
            }
        )
        conflict, conflict_score, conflict_info = _label_conflicts(ctx, groups)
        leak, leak_score, leak_info = _split_leaks(ctx, groups, i, j, d, scale)
        frame[issue_col("label_conflict")] = conflict
        frame[score_col("label_conflict")] = conflict_score
        frame[issue_col("split_leak")] = leak
        frame[score_col("split_leak")] = leak_score
        info.update(conflict_info)
        info.update(leak_info)
        self.info = info
        logger.info(
            "near_duplicates: %d groups, %d copies, %d label conflicts, %d split leaks",
            groups.n_groups, info["num_duplicates"], info["num_label_conflicts"], info["num_split_leaks"],
        )  # fmt: skip
        return frame


def _group_table(groups: Groups, values: np.ndarray) -> pd.DataFrame:
    members = np.flatnonzero(groups.group >= 0)
    return pd.DataFrame({"row": members, "group": groups.group[members], "value": values[members]})


def _no_issues(n: int, what: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Flags all False, scores all 1 and empty ``<what>s`` info: the start of a group issue."""
    return np.zeros(n, dtype=bool), np.ones(n), {f"{what}s": [], f"num_{what}s": 0, f"num_{what}_images": 0}


def _group_listing(
    ctx: AuditContext, groups: Groups, gids: np.ndarray, key: str, values: np.ndarray
) -> list[dict[str, Any]]:
    """``info`` entries of the given groups: their paths and each member's ``values``."""
    paths = ctx.paths.to_numpy(dtype=object)
    listing = []
    for g in gids:
        m = groups.members[int(g)]
        listing.append(
            {"group": int(g), "paths": [str(x) for x in paths[m]], key: [None if v is None else str(v) for v in values[m]]}
        )
    return listing


def _label_conflicts(ctx: AuditContext, groups: Groups) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    flag, score, info = _no_issues(len(ctx.paths), "label_conflict")
    labels = ctx.labels
    if labels is None or groups.n_groups == 0:
        return flag, score, info
    lab = labels.to_numpy(dtype=object)
    t = _group_table(groups, lab)
    t = t[t["value"].notna()]
    if t.empty:
        return flag, score, info
    counts = t.groupby(["group", "value"]).size()
    n_lab = t.groupby("group").size()
    n_distinct = t.groupby("group")["value"].nunique()
    bad = n_distinct.index[n_distinct > 1]
    tb = t[t["group"].isin(bad)]
    if tb.empty:
        return flag, score, info
    share = counts.reindex(pd.MultiIndex.from_arrays([tb["group"], tb["value"]])).to_numpy() / n_lab.reindex(
        tb["group"]
    ).to_numpy()
    rows = tb["row"].to_numpy()
    flag[rows] = True
    score[rows] = share
    conflicts = _group_listing(ctx, groups, bad, "labels", lab)
    info.update(
        {"label_conflicts": conflicts, "num_label_conflicts": len(conflicts), "num_label_conflict_images": int(flag.sum())}
    )
    return flag, score, info


def _split_leaks(
    ctx: AuditContext, groups: Groups, i: np.ndarray, j: np.ndarray, d: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    n = len(ctx.paths)
    flag, score, info = _no_issues(n, "split_leak")
    splits = ctx.splits
    if splits is None or groups.n_groups == 0:
        return flag, score, info
    sp = splits.to_numpy(dtype=object)
    is_train = np.array([s is not None and str(s).lower() in TRAIN_SPLITS for s in sp], dtype=bool)
    is_eval = np.array([s is not None and str(s).lower() not in TRAIN_SPLITS for s in sp], dtype=bool)
    g = groups.group
    member = g >= 0
    n_g = groups.n_groups
    has_train = np.zeros(n_g, dtype=bool)
    has_train[g[member & is_train]] = True
    leak_rows = np.flatnonzero(member & is_eval & has_train[np.maximum(g, 0)])
    if len(leak_rows) == 0:
        return flag, score, info
    flag[leak_rows] = True
    # score: nearest directly-matched training duplicate; a leak reached only through
    # a chain of pairs gets the largest in-radius score
    best = np.full(n, np.inf)
    for a, b in ((i, j), (j, i)):
        sel = is_eval[a] & is_train[b]
        np.minimum.at(best, a[sel], d[sel].astype(float))
    s = np.where(np.isfinite(best[leak_rows]), best[leak_rows], scale - 1) / scale
    score[leak_rows] = np.clip(s, 0.0, 1.0)
    leaks = _group_listing(ctx, groups, np.unique(g[leak_rows]), "splits", sp)
    info.update({"split_leaks": leaks, "num_split_leaks": len(leaks), "num_split_leak_images": int(len(leak_rows))})
    return flag, score, info


DUPLICATE_CHECKS: list[type[Check]] = [ExactDuplicates, NearDuplicates]
