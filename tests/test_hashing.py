"""Tests of imgaudit.hashing: imagehash-identical identity hashes, exact dihedral views."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
import scipy.fftpack
from PIL import Image

from imgaudit.hashing import (
    CENTER_BORDER,
    DIHEDRAL_TRANSPOSE,
    DIHEDRAL_VIEWS,
    HASH_KINDS,
    JITTER_VIEWS,
    apply_view,
    bits_to_uint64,
    compute_hashes,
    hamming,
    hash_image,
    view_blocks,
)

IMAGEHASH_FN = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
    "ahash": imagehash.average_hash,
}


def _as_int(h: imagehash.ImageHash) -> int:
    return int(str(h), 16)


def _fixed_images() -> dict[str, Image.Image]:
    """Deterministic generated images (no files, no randomness across versions)."""
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:90, 0:120]
    gradient = np.stack([x * 2, y * 2, (x + y)], axis=-1).clip(0, 255).astype(np.uint8)
    rings = (127 + 120 * np.sin(np.hypot(x - 40, y - 30) / 5.0)).astype(np.uint8)
    blocks = np.kron(rng.integers(0, 255, (6, 8), dtype=np.uint8), np.ones((15, 15), dtype=np.uint8))
    noise = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    return {
        "gradient": Image.fromarray(gradient),
        "rings": Image.fromarray(rings).convert("RGB"),
        "blocks": Image.fromarray(blocks).convert("RGB"),
        "noise": Image.fromarray(noise),
    }


DIHEDRAL_KINDS = list(IMAGEHASH_FN)


@pytest.mark.parametrize("name", ["gradient", "rings", "blocks", "noise"])
@pytest.mark.parametrize("kind", DIHEDRAL_KINDS)
def test_identity_column_equals_imagehash(name: str, kind: str) -> None:
    img = _fixed_images()[name]
    ours = compute_hashes(img, [kind])[kind]
    assert ours.shape == (8,) and ours.dtype == np.uint64
    assert int(ours[0]) == _as_int(IMAGEHASH_FN[kind](img))


def test_golden_phash_values() -> None:
    # pinned values (checked equal to imagehash.phash when written); a change means
    # the hash moved and every cached hash of every user is stale
    imgs = _fixed_images()
    got = {n: f"{int(compute_hashes(imgs[n])['phash'][0]):016x}" for n in ("gradient", "rings")}
    assert got == {n: str(imagehash.phash(imgs[n])) for n in ("gradient", "rings")}
    assert got == GOLDEN_PHASH


GOLDEN_PHASH = {"gradient": "8225f4511b57ec3e", "rings": "bfab14f93ac4d804"}


@pytest.mark.parametrize("name", ["gradient", "rings", "blocks", "noise"])
def test_phash_views_are_exact_transforms_of_the_dct_grid(name: str) -> None:
    # each view must equal phash computed on the transformed 32x32 grayscale grid
    img = _fixed_images()[name]
    views = compute_hashes(img)["phash"]
    grid = img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    for k, view in enumerate(DIHEDRAL_VIEWS):
        pixels = np.asarray(apply_view(grid, view))
        dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:8, :8]
        expected = _as_int(imagehash.ImageHash(dct > np.median(dct)))
        assert int(views[k]) == expected, view


@pytest.mark.parametrize("kind", DIHEDRAL_KINDS)
def test_views_match_hash_of_transformed_image(kind: str) -> None:
    img = _fixed_images()["rings"]
    views = compute_hashes(img, [kind])[kind]
    ref = np.array([_as_int(IMAGEHASH_FN[kind](apply_view(img, v))) for v in DIHEDRAL_VIEWS], dtype=np.uint64)
    d = hamming(views, ref)
    if kind == "phash":
        # flips and 180 degrees exact; 90-degree views may differ by PIL's resize rounding
        assert d.max() <= 4
        assert all(d[DIHEDRAL_VIEWS.index(v)] == 0 for v in ("identity", "rot180", "flip_h", "flip_v"))
    else:
        assert d.max() == 0


def test_view_order_and_ops() -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    img = Image.fromarray(arr)
    expected = {
        "identity": arr,
        "rot90": np.rot90(arr, 1),
        "rot180": np.rot90(arr, 2),
        "rot270": np.rot90(arr, 3),
        "flip_h": arr[:, ::-1],
        "flip_v": arr[::-1],
        "transpose": arr.T,
        "transverse": arr[::-1, ::-1].T,
    }
    assert list(DIHEDRAL_VIEWS) == list(expected) and set(DIHEDRAL_TRANSPOSE) == set(expected)
    for view, want in expected.items():
        np.testing.assert_array_equal(np.asarray(apply_view(img, view)), want)


def test_flipped_and_rotated_images_hash_to_their_views() -> None:
    img = _fixed_images()["blocks"]
    base = compute_hashes(img)["phash"]
    for k, view in enumerate(DIHEDRAL_VIEWS):
        moved = compute_hashes(apply_view(img, view))["phash"][0]
        assert hamming(moved, base[k]) <= 4, view
        # and far from the unrotated hash for asymmetric content
        if view != "identity":
            assert hamming(moved, base[0]) > 8, view


def test_bits_packing_and_hamming() -> None:
    bits = np.zeros((8, 8), dtype=bool)
    bits[0, 0] = True  # first bit = most significant
    bits[7, 7] = True
    assert int(bits_to_uint64(bits)) == (1 << 63) | 1
    a = np.array([0, 0xFF, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(hamming(a, np.uint64(0)), [0, 8, 64])
    with pytest.raises(ValueError):
        bits_to_uint64(np.zeros((4, 4), dtype=bool))


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown hash kind"):
        compute_hashes(Image.new("RGB", (10, 10)), ["md5"])


def test_any_mode_and_tiny_images() -> None:
    for img in (Image.new("L", (1, 1), 7), Image.new("RGBA", (3, 2)), Image.new("I;16", (9, 9))):
        out = compute_hashes(img, HASH_KINDS)
        assert set(out) == set(HASH_KINDS)
        assert all(v.shape == (8,) for v in out.values())


def _photo(size: tuple[int, int]) -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut()).resize(size, Image.Resampling.LANCZOS)


def test_phash_jitter_matches_cropped_and_rotated_copies() -> None:
    img = _photo((256, 256))
    jit = compute_hashes(img, ["phash_jitter"])["phash_jitter"]
    assert jit.shape == (8,) and len(JITTER_VIEWS) == 8
    col = {name: k for k, name in enumerate(JITTER_VIEWS)}
    cropped = img.crop((13, 13, 243, 243))
    copies = {
        "crop90": cropped,
        "crop90_flip_h": cropped.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "rot5": img.rotate(5, resample=Image.Resampling.BICUBIC),
        "rot-5": img.rotate(-5, resample=Image.Resampling.BICUBIC),
        "rot5_flip_h": img.rotate(5, resample=Image.Resampling.BICUBIC).transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    }
    plain = compute_hashes(img)["phash"][0]
    for name, copy in copies.items():
        h = compute_hashes(copy)["phash"][0]
        assert hamming(jit[col[name]], h) <= 6, name
        # the jitter view is closer to the copy than the plain hash is
        assert hamming(jit[col[name]], h) < hamming(plain, h), name


def _corner_watermark(img: Image.Image) -> Image.Image:
    from PIL import ImageDraw

    out = img.copy()
    w, h = img.size
    ImageDraw.Draw(out).text((w - 52, h - 14), "(c) 2024", fill=(255, 255, 255))
    return out


def test_phash_center_hashes_the_middle_in_dihedral_views() -> None:
    img = _photo((256, 192))
    center = compute_hashes(img, ["phash_center"])["phash_center"]
    b = CENTER_BORDER
    middle = img.crop((round(256 * b), round(192 * b), round(256 * (1 - b)), round(192 * (1 - b))))
    # resampled from the whole image's 32x32 grid: close to, not equal to, the crop's phash
    assert hamming(center[0], _as_int(imagehash.phash(middle))) <= 8
    assert hamming(center[0], compute_hashes(img)["phash"][0]) > 8  # a different picture
    for k, view in enumerate(DIHEDRAL_VIEWS):
        moved = compute_hashes(apply_view(img, view), ["phash_center"])["phash_center"][0]
        assert hamming(moved, center[k]) <= 4, view


def test_center_hash_ignores_a_corner_watermark() -> None:
    import skimage.data

    # a low-contrast crop: the white text is among its strongest features
    img = Image.fromarray(skimage.data.rocket()).convert("RGB").crop((0, 0, 160, 160))
    a = compute_hashes(img, ["phash", "phash_center"])
    b = compute_hashes(_corner_watermark(img), ["phash", "phash_center"])
    assert hamming(a["phash"], b["phash"][0]).min() > 10  # beyond any phash radius
    assert hamming(a["phash_center"], b["phash_center"][0]).min() <= 2


def test_hash_image_shares_one_grid_and_returns_the_dct_block() -> None:
    img = _fixed_images()["rings"]
    out = hash_image(img, HASH_KINDS)
    assert list(out.hashes) == list(HASH_KINDS)
    for kind in HASH_KINDS:  # the same bits as each kind alone
        assert np.array_equal(out.hashes[kind], compute_hashes(img, [kind])[kind]), kind
    grid = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS))
    low = scipy.fftpack.dct(scipy.fftpack.dct(grid, axis=0), axis=1)[:8, :8].copy()
    low[0, 0] = 0
    assert out.dct is not None and out.dct.dtype == np.float16 and out.dct.shape == (8, 8)
    np.testing.assert_allclose(out.dct, low / np.linalg.norm(low), atol=1e-3)
    assert out.dct[0, 0] == 0 and abs(float(np.linalg.norm(out.dct.astype(np.float64))) - 1) < 1e-2
    # the feature of a flat image is all zero (no direction to compare), not NaN
    flat = hash_image(Image.new("RGB", (40, 30), "gray"), ["phash"]).dct
    assert flat is not None and not flat.any()
    assert hash_image(img, ["dhash"]).dct is None


def test_dct_block_views_are_the_views_of_the_transformed_grid() -> None:
    grid = np.asarray(_fixed_images()["blocks"].convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=float)
    low = scipy.fftpack.dct(scipy.fftpack.dct(grid, axis=0), axis=1)[:8, :8]
    views = view_blocks(low)
    for k, view in enumerate(DIHEDRAL_VIEWS):
        moved = np.asarray(apply_view(Image.fromarray(grid.astype(np.uint8)), view), dtype=float)
        want = scipy.fftpack.dct(scipy.fftpack.dct(moved, axis=0), axis=1)[:8, :8]
        np.testing.assert_allclose(views[k], want, atol=1e-6, err_msg=view)
