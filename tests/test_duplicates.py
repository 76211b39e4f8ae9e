"""Tests of the exact_duplicates and near_duplicates checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import imgaudit
from imgaudit.checks import CHECKS
from imgaudit.checks.base import SkipCheck
from imgaudit.checks.duplicates import (
    ExactDuplicates,
    NearDuplicates,
    components,
    embedding_pairs,
    equal_value_pairs,
    make_groups,
)
from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.config import AuditConfig
from imgaudit.context import AuditContext
from imgaudit.imageset import load_images

EX, NEAR = "exact_duplicates", "near_duplicates"


def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    return Image.fromarray(arr).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _write_dataset(root: Path) -> dict[str, str]:
    """train/valid class folders with planted duplicates; returns role -> path."""
    for d in ("train/cat", "train/dog", "valid/cat", "valid/dog"):
        (root / d).mkdir(parents=True)
    astro = _photo("astronaut", (96, 96))
    coffee = _photo("coffee", (120, 80))
    chelsea = _photo("chelsea", (120, 90))
    rocket = _photo("rocket", (96, 72))
    camera = _photo("camera", (80, 80))
    hubble = _photo("hubble_deep_field", (100, 88))
    coins = _photo("coins", (96, 76))
    paths = {
        "astro": "train/cat/astro.png",
        "astro_bytes_copy": "train/cat/astro_copy.png",  # identical bytes
        "astro_pixel_copy": "train/cat/astro_pixels.bmp",  # same pixels, other format
        "coffee": "train/dog/coffee.jpg",
        "coffee_big": "train/dog/coffee_big.jpg",  # resized up: the keeper
        "coffee_hflip": "train/dog/coffee_hflip.jpg",
        "chelsea": "train/cat/chelsea.png",
        "chelsea_rot90": "train/cat/chelsea_rot90.png",
        "chelsea_rot180": "train/cat/chelsea_rot180.png",
        "chelsea_transpose": "train/cat/chelsea_transpose.png",
        "rocket": "train/cat/rocket.png",
        "rocket_as_dog": "train/dog/rocket_dog.png",  # label conflict (same bytes)
        "camera": "train/dog/camera.png",
        "camera_valid": "valid/dog/camera_val.jpg",  # split leak (re-encoded)
        "hubble": "valid/cat/hubble.png",
        "coins": "valid/dog/coins.png",
        "broken": "valid/dog/broken.png",
        "broken2": "valid/cat/broken2.png",  # same bytes as broken: never duplicates
    }
    astro.save(root / paths["astro"])
    shutil.copyfile(root / paths["astro"], root / paths["astro_bytes_copy"])
    astro.save(root / paths["astro_pixel_copy"])
    coffee.save(root / paths["coffee"], quality=92)
    coffee.resize((240, 160), Image.Resampling.LANCZOS).save(root / paths["coffee_big"], quality=92)
    coffee.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / paths["coffee_hflip"], quality=92)
    chelsea.save(root / paths["chelsea"])
    chelsea.transpose(Image.Transpose.ROTATE_90).save(root / paths["chelsea_rot90"])
    chelsea.transpose(Image.Transpose.ROTATE_180).save(root / paths["chelsea_rot180"])
    chelsea.transpose(Image.Transpose.TRANSPOSE).save(root / paths["chelsea_transpose"])
    rocket.save(root / paths["rocket"])
    shutil.copyfile(root / paths["rocket"], root / paths["rocket_as_dog"])
    camera.save(root / paths["camera"])
    camera.save(root / paths["camera_valid"], quality=85)
    hubble.save(root / paths["hubble"])
    coins.save(root / paths["coins"])
    (root / paths["broken"]).write_bytes(b"\x89PNG not really")
    shutil.copyfile(root / paths["broken"], root / paths["broken2"])
    return paths


@pytest.fixture(scope="module")
def dup_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("dups")
    return root, _write_dataset(root)


@pytest.fixture(scope="module")
def dup_result(dup_dir: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root, _ = dup_dir
    cache = tmp_path_factory.mktemp("dupcache")
    return imgaudit.audit(root, checks=[EX, NEAR], cache_dir=cache, num_workers=0, progress=False)


def _groups_by_path(issues: pd.DataFrame, check: str) -> dict[str, int]:
    return issues[extra_col(check, "group")].to_dict()


def _same_group(groups: dict[str, int], *paths: str) -> bool:
    ids = {groups[p] for p in paths}
    return len(ids) == 1 and -1 not in ids


def test_registered_in_order() -> None:
    names = list(CHECKS)
    assert CHECKS[EX] is ExactDuplicates and CHECKS[NEAR] is NearDuplicates
    assert names.index(EX) > names.index("unreadable")
    assert NearDuplicates.issue_types() == ("near_duplicates", "label_conflict", "split_leak")


def test_exact_vs_near(dup_result, dup_dir) -> None:  # type: ignore[no-untyped-def]
    _, p = dup_dir
    issues = dup_result.issues
    exact = _groups_by_path(issues, EX)
    near = _groups_by_path(issues, NEAR)
    # exact: identical bytes and identical pixels, nothing else
    assert _same_group(exact, p["astro"], p["astro_bytes_copy"], p["astro_pixel_copy"])
    assert _same_group(exact, p["rocket"], p["rocket_as_dog"])
    for role in ("coffee", "coffee_big", "coffee_hflip", "chelsea_rot90", "camera_valid", "hubble"):
        assert exact[p[role]] == -1, role
    assert int(issues[issue_col(EX)].sum()) == 3  # 2 astro copies + 1 rocket copy
    # near: also resized, re-encoded, flipped and rotated copies
    assert _same_group(near, p["astro"], p["astro_bytes_copy"], p["astro_pixel_copy"])
    assert _same_group(near, p["coffee"], p["coffee_big"], p["coffee_hflip"])
    assert _same_group(near, p["chelsea"], p["chelsea_rot90"], p["chelsea_rot180"], p["chelsea_transpose"])
    assert _same_group(near, p["camera"], p["camera_valid"])
    for role in ("hubble", "coins", "broken", "broken2"):
        assert near[p[role]] == -1, role
    info = dup_result.info[NEAR]
    assert info["num_groups"] == 5
    assert sorted(len(g) for g in info["groups"]) == [2, 2, 3, 3, 4]


def test_unreadable_never_duplicates(dup_result, dup_dir) -> None:  # type: ignore[no-untyped-def]
    _, p = dup_dir
    issues = dup_result.issues
    for role in ("broken", "broken2"):
        row = issues.loc[p[role]]
        for check in (EX, NEAR):
            assert not row[issue_col(check)]
            assert row[extra_col(check, "group")] == -1
            assert row[score_col(check)] == 1.0


def test_keep_choice_and_distances(dup_result, dup_dir) -> None:  # type: ignore[no-untyped-def]
    _, p = dup_dir
    issues = dup_result.issues
    keep, dist = issues[extra_col(NEAR, "keep")], issues[extra_col(NEAR, "distance")]
    # largest resolution wins
    assert keep[p["coffee_big"]] and not keep[p["coffee"]] and not keep[p["coffee_hflip"]]
    # equal resolution: the smallest path wins (stable tie-break)
    astro = sorted([p["astro"], p["astro_bytes_copy"], p["astro_pixel_copy"]])
    assert keep[astro[0]] and not keep[astro[1]] and not keep[astro[2]]
    # chelsea: 120x90 and its rotations (90x120) have equal area -> smallest path
    ch = sorted([p["chelsea"], p["chelsea_rot90"], p["chelsea_rot180"], p["chelsea_transpose"]])
    assert keep[ch[0]] and not any(keep[x] for x in ch[1:])
    # exactly one keeper per group, the flagged rows are the non-keepers
    groups = issues[extra_col(NEAR, "group")]
    members = issues[groups >= 0]
    assert (members.groupby(extra_col(NEAR, "group"))[extra_col(NEAR, "keep")].sum() == 1).all()
    np.testing.assert_array_equal(issues[issue_col(NEAR)], (groups >= 0) & ~keep)
    assert keep[groups == -1].all()
    # distance to the keeper: 0 for keepers and exact copies, small for variants, -1 outside
    assert dist[astro].tolist() == [0, 0, 0]
    assert 0 <= dist[p["coffee_hflip"]] <= 8
    assert dist[p["hubble"]] == -1
    # info lists each group keeper first
    for g in dup_result.info[NEAR]["groups"]:
        assert keep[g[0]] and not any(keep[x] for x in g[1:])
    # scores: identical copies 0, outside groups 1, all within [0, 1]
    s = issues[score_col(NEAR)]
    assert s[p["astro_bytes_copy"]] == 0.0 and s[p["hubble"]] == 1.0
    assert s.between(0, 1).all()


def test_label_conflicts(dup_result, dup_dir) -> None:  # type: ignore[no-untyped-def]
    _, p = dup_dir
    issues = dup_result.issues
    flagged = set(issues.index[issues[issue_col("label_conflict")]])
    assert flagged == {p["rocket"], p["rocket_as_dog"]}
    assert issues.loc[p["rocket"], score_col("label_conflict")] == 0.5
    info = dup_result.info[NEAR]
    assert info["num_label_conflicts"] == 1
    (conflict,) = info["label_conflicts"]
    assert sorted(conflict["labels"]) == ["cat", "dog"]
    summary = dup_result.summary.set_index("issue_type")
    assert summary.loc["label_conflict", "num_issues"] == 2


def test_split_leaks(dup_result, dup_dir) -> None:  # type: ignore[no-untyped-def]
    _, p = dup_dir
    issues = dup_result.issues
    flagged = set(issues.index[issues[issue_col("split_leak")]])
    assert flagged == {p["camera_valid"]}  # the validation copy, not its training original
    assert issues.loc[p["camera_valid"], score_col("split_leak")] < 0.5
    info = dup_result.info[NEAR]
    assert info["num_split_leaks"] == 1 and info["num_split_leak_images"] == 1
    assert sorted(info["split_leaks"][0]["splits"]) == ["train", "valid"]
    summary = dup_result.summary.set_index("issue_type")
    assert summary.loc["split_leak", "num_issues"] == 1


def test_orientation_robust_off_misses_flips(dup_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, p = dup_dir
    res = imgaudit.audit(
        root, checks=[NEAR], cache_dir=tmp_path, num_workers=0, progress=False,
        check_options={NEAR: {"orientation_robust": False, "jitter": False}},
    )  # fmt: skip
    near = _groups_by_path(res.issues, NEAR)
    assert not _same_group(near, p["coffee"], p["coffee_hflip"])
    assert not _same_group(near, p["chelsea"], p["chelsea_rot90"])
    assert _same_group(near, p["coffee"], p["coffee_big"])  # a resize is still found


def test_small_crop_and_rotation_found_by_jitter(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    base = _photo("astronaut", (160, 160))
    base.save(root / "a.png")
    base.crop((8, 8, 152, 152)).save(root / "a_crop5.png")
    base.rotate(5, resample=Image.Resampling.BICUBIC).save(root / "a_rot5.png")
    base.rotate(-5, resample=Image.Resampling.BICUBIC).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "a_rotm5_flip.png")
    _photo("coffee", (160, 160)).save(root / "other.png")
    groups = {}
    for jitter in (True, False):
        res = imgaudit.audit(
            root, checks=[NEAR], cache_dir=tmp_path / "cache", num_workers=0, progress=False,
            check_options={NEAR: {"jitter": jitter}},
        )  # fmt: skip
        groups[jitter] = _groups_by_path(res.issues, NEAR)
    assert _same_group(groups[True], "a.png", "a_crop5.png", "a_rot5.png", "a_rotm5_flip.png")
    assert groups[True]["other.png"] == -1
    assert groups[False]["a_rot5.png"] == -1 or not _same_group(groups[False], "a.png", "a_rot5.png")


def test_no_labels_no_splits(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    root.mkdir()
    img = _photo("coffee", (90, 60))
    img.save(root / "x.png")
    img.save(root / "y.png")
    res = imgaudit.audit(root, checks=[EX, NEAR], cache_dir=tmp_path / "c", num_workers=0, progress=False)
    issues = res.issues
    assert issues[issue_col(NEAR)].sum() == 1
    assert not issues[issue_col("label_conflict")].any() and not issues[issue_col("split_leak")].any()
    assert res.info[NEAR]["num_label_conflicts"] == 0 and res.info[NEAR]["num_split_leaks"] == 0


def test_grown_dataset_rehashes_only_new_files(tmp_path: Path) -> None:
    root = tmp_path / "grow"
    (root / "a").mkdir(parents=True)
    _photo("coffee", (120, 80)).save(root / "a" / "coffee.png")
    _photo("chelsea", (120, 90)).save(root / "a" / "chelsea.png")
    cfg = AuditConfig(checks=(NEAR,), cache_dir=tmp_path / "cache", num_workers=0, progress=False)

    def run() -> tuple[pd.DataFrame, dict[str, int]]:
        ctx = AuditContext(load_images(root), cfg)
        try:
            check = NearDuplicates()
            frame = check.validate(check.run(ctx), ctx.paths)
            return frame, dict(ctx.decoded.stats)
        finally:
            ctx.close()

    first, stats1 = run()
    assert stats1["decoded"] == 2 and (first[extra_col(NEAR, "group")] == -1).all()
    # add a flipped copy of an existing image and a new distinct image
    _photo("coffee", (120, 80)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "a" / "z_coffee_flip.png")
    _photo("rocket", (96, 72)).save(root / "a" / "rocket.png")
    second, stats2 = run()
    assert stats2["decoded"] == 2 and stats2["from_cache"] == 2  # only the new files
    g = second[extra_col(NEAR, "group")]
    assert g["a/coffee.png"] == g["a/z_coffee_flip.png"] >= 0
    assert g["a/chelsea.png"] == -1 and g["a/rocket.png"] == -1
    assert second.loc["a/z_coffee_flip.png", issue_col(NEAR)]


def test_missing_hash_kind_skips_and_bad_params_raise(tmp_path: Path) -> None:
    root = tmp_path / "k"
    root.mkdir()
    _photo("coffee", (64, 64)).save(root / "x.png")
    ctx = AuditContext(load_images(root), AuditConfig(cache_dir=False, num_workers=0, progress=False))
    with pytest.raises(SkipCheck, match="dhash"):
        NearDuplicates(hash_kind="dhash").run(ctx)
    with pytest.raises(ValueError):
        NearDuplicates(hash_kind="md5").run(ctx)
    with pytest.raises(ValueError):
        NearDuplicates(radius=40).run(ctx)
    with pytest.raises(ValueError, match="center_radius"):
        NearDuplicates(center_radius=-1).run(ctx)
    with pytest.raises(ValueError, match="verify_radius"):
        NearDuplicates(verify_radius=33).run(ctx)
    with pytest.raises(TypeError):
        NearDuplicates(threshold=3)


# -- helpers -----------------------------------------------------------------------------


def test_make_groups_keeper_and_numbering() -> None:
    paths = np.array(["d", "c", "b", "a", "e"])
    area = np.array([10.0, 20.0, 20.0, 5.0, 7.0])
    comp = components(5, np.array([0, 1, 3]), np.array([1, 2, 0]))  # {0,1,2,3}, 4 alone
    g = make_groups(comp, area, paths)
    # two rows tie on the largest area (c, b): the smaller path "b" (row 2) is kept
    assert g.keep.tolist() == [False, False, True, False, True]
    assert g.group.tolist() == [0, 0, 0, 0, -1]
    assert g.keeper.tolist() == [2, 2, 2, 2, -1]
    assert g.members[0][0] == 2 and sorted(g.members[0].tolist()) == [0, 1, 2, 3]
    # groups are numbered in the order of their keeper's path
    g2 = make_groups(components(4, np.array([0, 2]), np.array([1, 3])), np.ones(4), np.array(["z1", "z2", "a1", "a2"]))
    assert g2.group.tolist() == [1, 1, 0, 0]


def test_equal_value_pairs_and_embeddings() -> None:
    i, j = equal_value_pairs(np.array(["x", None, "x", "y", "x", None], dtype=object))
    assert len(i) == 2
    assert components(6, i, j).tolist()[0] == components(6, i, j).tolist()[4] != -1
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(50, 16))
    emb[7] = emb[3] * 2 + 0.01  # same direction
    a, b, s = embedding_pairs(emb, 0.99, block=8)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(3, 7)] and s[0] > 0.99
    sub = np.array([3, 5, 7])
    a2, b2, _ = embedding_pairs(emb, 0.99, rows=sub)
    assert (a2.tolist(), b2.tolist()) == ([3], [7])


def test_edge_support_cuts_bridges_only() -> None:
    from itertools import combinations

    from imgaudit.checks.duplicates import edge_support

    clique_a = list(combinations(range(0, 4), 2))
    clique_b = list(combinations(range(4, 8), 2))
    edges = np.array(clique_a + clique_b + [(3, 4), (8, 9), (10, 11), (11, 12)])
    s = edge_support(13, edges[:, 0], edges[:, 1])
    bridge = len(clique_a) + len(clique_b)
    assert np.all(s[:bridge] == 1.0)
    assert s[bridge] == pytest.approx(2 / 5)  # N[3] = {0..4}, N[4] = {3..7}: share {3, 4}
    assert np.all(s[bridge + 1 :] == 1.0)  # an isolated pair and a short chain are kept
    # the check keeps both cliques apart although a link joins them
    comp_all = components(13, edges[:, 0], edges[:, 1])
    kept = edges[s >= 0.75]
    comp_cut = components(13, kept[:, 0], kept[:, 1])
    assert comp_all[0] == comp_all[7] and comp_cut[0] != comp_cut[7]
    # hubs above the cap are left alone (bounded cost)
    assert edge_support(13, edges[:, 0], edges[:, 1], cap=3)[bridge] == 1.0


def test_watermarked_copy_found_by_center_hash(tmp_path: Path) -> None:
    import skimage.data
    from PIL import ImageDraw

    root = tmp_path / "wm"
    root.mkdir()
    base = Image.fromarray(skimage.data.rocket()).convert("RGB").crop((0, 0, 160, 160))
    base.save(root / "a.png")
    marked = base.copy()
    ImageDraw.Draw(marked).text((160 - 52, 160 - 14), "(c) 2024", fill=(255, 255, 255))
    marked.save(root / "a_watermark.png")
    _photo("coffee", (160, 160)).save(root / "other.png")
    _photo("chelsea", (160, 160)).save(root / "other2.png")
    groups, infos = {}, {}
    for center in (True, False):
        res = imgaudit.audit(
            root, checks=[NEAR], cache_dir=tmp_path / "cache", num_workers=0, progress=False,
            check_options={NEAR: {"center": center}},
        )  # fmt: skip
        groups[center], infos[center] = _groups_by_path(res.issues, NEAR), res.info[NEAR]
    assert _same_group(groups[True], "a.png", "a_watermark.png")
    assert groups[True]["other.png"] == -1 and groups[True]["other2.png"] == -1
    assert infos[True]["center"] and infos[True]["num_center_pairs"] >= 1
    assert groups[False]["a_watermark.png"] == -1 and not infos[False]["center"]


def test_best_view_similarity() -> None:
    from imgaudit.checks.duplicates import best_view_similarity
    from imgaudit.hashing import DIHEDRAL_VIEWS, dct_block, view_blocks

    rng = np.random.default_rng(0)
    low = rng.normal(size=(3, 8, 8))
    flipped = view_blocks(low[0])[DIHEDRAL_VIEWS.index("flip_h")]
    brighter = 2.5 * low[1]
    brighter[0, 0] += 40.0
    feats = np.stack([dct_block(x) for x in (*low, flipped, brighter)])
    a, b = np.array([0, 0, 0, 1]), np.array([3, 1, 0, 4])
    sim = best_view_similarity(feats, a, b)
    assert sim[0] == pytest.approx(1, abs=2e-3)  # a mirrored copy, aligned by the views
    assert abs(sim[1]) < 0.6  # unrelated blocks
    assert sim[2] == pytest.approx(1, abs=2e-3)
    assert sim[3] == pytest.approx(1, abs=2e-3)  # contrast and DC (brightness) do not count
    plain = best_view_similarity(feats, a, b, orientation_robust=False)
    assert plain[0] < 0.9 and plain[2] == pytest.approx(1, abs=2e-3)
    # blocked evaluation gives the same numbers
    np.testing.assert_allclose(best_view_similarity(feats, a, b, block=3), sim)


def test_verification_stage_adds_only_agreeing_candidates(dup_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root, p = dup_dir
    res = {}
    for opts in ({}, {"verify_radius": 12}, {"verify_radius": 12, "verify_similarity": 1.01}):
        out = imgaudit.audit(
            root, checks=[NEAR], cache_dir=tmp_path, num_workers=0, progress=False, check_options={NEAR: opts},
        )  # fmt: skip
        res[len(opts) + (opts.get("verify_similarity", 0) > 1)] = out.info[NEAR]
    off, on, none_kept = res[0], res[1], res[3]
    assert off["verify_radius"] is None and off["num_candidates_verified"] == 0
    assert on["verify_radius"] == 12 and 0 <= on["num_candidates_kept"] <= on["num_candidates_verified"]
    # a similarity no pair reaches keeps none: the groups are those of the plain radius
    assert none_kept["num_candidates_kept"] == 0
    assert none_kept["groups"] == off["groups"]
    assert none_kept["num_candidates_verified"] == on["num_candidates_verified"]
