from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE, PLANTED, jpeg_bytes, photo, png_bytes
from PIL import Image

from imgaudit.cache import Cache
from imgaudit.config import AuditConfig
from imgaudit.decode import RECORD_COLUMNS, _hash_input, run_decode_pass, thumb_namespace
from imgaudit.hashing import compute_hashes
from imgaudit.imageset import load_images
from imgaudit.imaging import load_image


def _load(root: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_images(root)


def _cfg(**kw) -> AuditConfig:
    kw.setdefault("num_workers", 0)
    kw.setdefault("progress", False)
    return AuditConfig(size=64, **kw)


@pytest.mark.parametrize("workers", [0, 2])
def test_hostile_corpus_every_file_is_a_row_with_its_reason(hostile_dir: Path, tree_checksum, tmp_path: Path, workers: int) -> None:
    before = tree_checksum(hostile_dir)
    ims = _load(hostile_dir)
    cache = Cache(tmp_path / "cache")
    out = run_decode_pass(ims, _cfg(num_workers=workers), cache)
    rec = out.records
    assert list(rec.columns) == list(RECORD_COLUMNS)
    assert rec.index.equals(ims.table.index)
    for path, reason in HOSTILE.items():
        row = rec.loc[path]
        if reason is None:
            assert row["ok"], (path, row["error"])
            assert row["error"] is None
            assert out.thumbnail(path) is not None
        else:
            assert not row["ok"], path
            assert reason in row["error"], (path, row["error"])
            assert out.thumbnail(path) is None
            assert not out.hashes["phash"][rec.index.get_loc(path)].any()
    assert rec.loc["exif_rotated.jpg", ["width", "height", "exif_orientation"]].tolist() == [96, 128, 6]
    assert rec.loc["one_pixel.png", ["width", "height"]].tolist() == [1, 1]
    assert rec.loc["sixteen_bit.png", "mode"].startswith("I;16")
    assert rec.loc["cmyk.jpg", ["mode", "channels"]].tolist() == ["CMYK", 4]
    assert rec.loc["palette_transparent.png", "mode"] == "P"
    cache.close()
    assert tree_checksum(hostile_dir) == before
    # the cache lives outside the dataset
    assert not any(name.endswith(".sqlite") for _, _, files in os.walk(hostile_dir) for name in files)


def test_records_and_hashes_match_direct_decoding(dataset_dir: Path) -> None:
    ims = _load(dataset_dir)
    cfg = _cfg(hash_kinds=("phash", "dhash"))
    out = run_decode_pass(ims, cfg, None)
    rec = out.records
    assert rec["ok"].dtype == bool and rec["width"].dtype == np.int64 and rec["entropy"].dtype == np.float64
    for kind in ("phash", "dhash"):
        assert out.hashes[kind].shape == (len(ims), 8) and out.hashes[kind].dtype == np.uint64
    i = rec.index.get_loc("cat/img_03.jpg")
    li = load_image(ims.abspath("cat/img_03.jpg"), decode_size=cfg.decode_size)
    # the pass hashes the decoded image box-reduced to a 32..63 px short side
    hashed = _hash_input(li.image.convert("L"))
    assert 32 <= min(hashed.size) < 64 or min(li.image.size) < 64
    direct = compute_hashes(hashed, ("phash", "dhash"))
    assert np.array_equal(out.hashes["phash"][i], direct["phash"])
    assert np.array_equal(out.hashes["dhash"][i], direct["dhash"])
    # exact copy: same bytes; unreadable row: ok False with zero hashes
    a, b = PLANTED["exact_copy"]
    assert rec.at[a, "sha1"] == rec.at[b, "sha1"] and rec.at[a, "pixel_hash"] == rec.at[b, "pixel_hash"]
    assert not rec.at["cat/corrupt.jpg", "ok"] and rec.at["cat/corrupt.jpg", "width"] == 0
    thumb = out.thumbnail("cup/big.jpg")
    assert thumb is not None and max(thumb.size) == cfg.thumbnail_size and thumb.mode == "RGB"
    with pytest.raises(KeyError):
        out.thumbnail("not/there.jpg")


def test_process_pool_gives_the_same_records(dataset_dir: Path) -> None:
    ims = _load(dataset_dir)
    a = run_decode_pass(ims, _cfg(num_workers=0), None)
    b = run_decode_pass(ims, _cfg(num_workers=2), None)
    assert a.records.equals(b.records)
    assert np.array_equal(a.hashes["phash"], b.hashes["phash"])


def test_pixel_hash_ignores_encoding(tmp_path: Path) -> None:
    img = photo("coffee", 7)
    (tmp_path / "a.png").write_bytes(png_bytes(img, compress_level=1))
    (tmp_path / "b.png").write_bytes(png_bytes(img, compress_level=9, optimize=True))
    (tmp_path / "c.png").write_bytes(png_bytes(photo("coffee", 8)))
    rec = run_decode_pass(_load(tmp_path), _cfg(), None).records
    assert rec.at["a.png", "sha1"] != rec.at["b.png", "sha1"]
    assert rec.at["a.png", "pixel_hash"] == rec.at["b.png", "pixel_hash"]
    assert rec.at["a.png", "pixel_hash"] != rec.at["c.png", "pixel_hash"]


def test_cache_decodes_only_new_changed_content(dataset_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(dataset_dir, root)
    cache = Cache(tmp_path / "cache")
    cfg = _cfg()
    first = run_decode_pass(_load(root), cfg, cache)
    n = len(first.records)
    # every file is read and decoded once (the corrupt one too: its reason is cached)
    assert first.stats == {"decoded": n, "from_cache": 0, "failed": 0, "total": n}

    again = run_decode_pass(_load(root), cfg, cache)
    assert again.stats["decoded"] == 0 and again.stats["from_cache"] == n
    assert again.records.equals(first.records)
    assert np.array_equal(again.hashes["phash"], first.hashes["phash"])
    assert again.thumbnail("cat/img_00.jpg").size == first.thumbnail("cat/img_00.jpg").size

    # add 10 images: exactly those 10 are decoded
    for k in range(10):
        (root / "cup" / f"new_{k}.jpg").write_bytes(jpeg_bytes(photo("coffee", 500 + k)))
    added = run_decode_pass(_load(root), cfg, cache)
    assert added.stats["decoded"] == 10
    assert added.stats["from_cache"] == n

    # renamed and copied files reuse their record by content; a changed file is decoded
    os.rename(root / "cat/img_04.jpg", root / "cat/renamed.jpg")
    shutil.copy(root / "cat/img_05.jpg", root / "cup/copied.jpg")
    (root / "cup/img_05.jpg").write_bytes(jpeg_bytes(photo("coffee", 999)))
    moved = run_decode_pass(_load(root), cfg, cache)
    assert moved.stats["decoded"] == 1
    assert moved.records.at["cat/renamed.jpg", "sha1"] == first.records.at["cat/img_04.jpg", "sha1"]
    assert moved.records.at["cup/copied.jpg", "ok"]
    cache.close()


def test_options_change_invalidates_records(dataset_dir: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    ims = _load(dataset_dir)
    run_decode_pass(ims, _cfg(), cache)
    other = run_decode_pass(ims, _cfg(decode_size=96), cache)
    assert other.stats["from_cache"] == 0
    cache.close()


def _stats_reference(img: Image.Image) -> dict[str, float]:
    """The statistics written out in plain numpy, as documented in image_stats."""
    from imgaudit.decode import STAT_SIDE

    rgb = np.asarray(img.convert("RGB")).astype(np.int64)
    gray_img = img.convert("L")
    g = np.asarray(gray_img).astype(np.float64)
    n = g.size
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    w, h = gray_img.size
    if min(w, h) > STAT_SIDE:
        k = STAT_SIDE / min(w, h)
        gray_img = gray_img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BOX)
    s = np.asarray(gray_img).astype(np.float64)
    if min(s.shape) < 3:
        sharp = float("nan")
    elif s.std() == 0:
        sharp = 0.0
    else:
        lap = 4 * s[1:-1, 1:-1] - s[:-2, 1:-1] - s[2:, 1:-1] - s[1:-1, :-2] - s[1:-1, 2:]
        sharp = lap.std() / s.std()
    _, counts = np.unique(g, return_counts=True)
    p = counts / n
    srt, csrt = np.sort(g.ravel()), np.sort(chroma.ravel())
    return {
        "brightness_mean": g.mean() / 255,
        "brightness_p05": srt[int(np.ceil(0.05 * n)) - 1] / 255,
        "brightness_p99": srt[int(np.ceil(0.99 * n)) - 1] / 255,
        "chroma_mean": chroma.mean() / 255,
        "chroma_p99": csrt[int(np.ceil(0.99 * n)) - 1] / 255,
        "gray_std": g.std() / 255,
        "sharpness": sharp,
        "entropy": float(-(p * np.log2(p)).sum()) / 8,
    }


@pytest.mark.parametrize("size", [(1, 1), (2, 7), (5, 4), (120, 90), (300, 200)])
def test_image_stats_kernel_matches_numpy_reference(size: tuple[int, int]) -> None:
    from imgaudit.decode import STAT_COLUMNS, image_stats

    rng = np.random.default_rng(sum(size))
    for img in (photo("coffee", 3, size), Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))):
        got, want = image_stats(img), _stats_reference(img)
        assert list(got) == list(STAT_COLUMNS)
        for k in STAT_COLUMNS:
            if np.isnan(want[k]):
                assert np.isnan(got[k]), k
            else:
                assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-9), (size, k)
    flat = image_stats(Image.new("RGB", (40, 30), (10, 20, 30)))
    assert flat["sharpness"] == 0.0 and flat["gray_std"] == 0.0 and flat["entropy"] == 0.0


def test_dct_features_are_decoded_cached_and_zero_when_unreadable(dataset_dir: Path, tmp_path: Path) -> None:
    from imgaudit.hashing import hash_image

    ims = _load(dataset_dir)
    cfg = _cfg()
    cache = Cache(tmp_path / "cache")
    out = run_decode_pass(ims, cfg, cache)
    dct = out.features["phash_dct"]
    assert dct.shape == (len(ims), 8, 8) and dct.dtype == np.float16
    i = out.records.index.get_loc("cat/img_03.jpg")
    li = load_image(ims.abspath("cat/img_03.jpg"), decode_size=cfg.decode_size)
    direct = hash_image(_hash_input(li.image.convert("L")), cfg.hash_kinds)
    assert np.array_equal(dct[i], direct.dct)
    for kind in cfg.hash_kinds:
        assert np.array_equal(out.hashes[kind][i], direct.hashes[kind]), kind
    assert not dct[out.records.index.get_loc("cat/corrupt.jpg")].any()
    again = run_decode_pass(ims, cfg, cache)
    assert again.stats["from_cache"] == len(ims)
    assert np.array_equal(again.features["phash_dct"], dct)
    cache.close()
    assert run_decode_pass(ims, _cfg(hash_kinds=("dhash",)), None).features == {}


def test_thumbnails_are_made_on_first_use_and_cached(dataset_dir: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cfg = _cfg(thumbnail_size=48)
    out = run_decode_pass(_load(dataset_dir), cfg, cache)
    ns = thumb_namespace(48)
    # the pass itself makes none: only the images a report shows get one
    assert cache.keys(ns) == set()
    thumb = out.thumbnail("cup/big.jpg")
    assert thumb is not None and max(thumb.size) == 48 and thumb.mode == "RGB"
    assert cache.keys(ns) == {out.records.at["cup/big.jpg", "sha1"]}
    # the next audit finds it in the cache, even with the source file gone
    again = run_decode_pass(_load(dataset_dir), cfg, cache)
    again._source = None
    assert again.thumbnail("cup/big.jpg").size == thumb.size
    assert again.thumbnail("cat/img_00.jpg") is None  # never made, no source to make it from
    cache.close()
