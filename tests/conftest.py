"""Shared fixtures: isolated environment, a tiny seeded dataset, a hostile corpus.

- every test gets its own ``IMGAUDIT_CACHE_DIR`` (autouse) and FiftyOne set up for
  offline tests;
- ``dataset_dir`` (session): class folders ``cat/`` and ``cup/`` of small real
  photo crops (scikit-image's chelsea and coffee) with planted problems, listed in
  :data:`PLANTED` (run the audit with ``size=64``: normal images are 128x96);
- ``hostile_dir`` (session): a flat folder of files that try to break loaders,
  listed in :data:`HOSTILE` with the reason (substring) each must end with;
- ``tree_checksum`` (function and fixture): a digest of a whole source tree
  (names, types, sizes, mtimes, contents, symlink targets) to prove we never write
  into the user's data.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

# FiftyOne reads these at import time, so set them before any test imports it
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

#: audit size to use with ``dataset_dir`` (normal images are 128x96)
DATASET_SIZE = 64

#: planted problems of ``dataset_dir``: check or duplicate kind -> relative path(s)
PLANTED: dict[str, list[str]] = {
    "dark": ["cat/dark.jpg"],
    "light": ["cat/light.jpg"],
    "blurry": ["cup/blurry.jpg"],
    "low_information": ["cup/blank.png"],
    "grayscale": ["cat/gray_rgb.png"],
    "low_resolution": ["cat/tiny.png"],
    "odd_aspect_ratio": ["cup/wide.jpg"],
    "odd_size": ["cup/big.jpg"],
    "unreadable": ["cat/corrupt.jpg"],
    # duplicates: the original first, then its copy
    "exact_copy": ["cat/img_00.jpg", "cup/copy_of_cat_00.jpg"],
    "resized_copy": ["cat/img_01.jpg", "cat/resized_01.jpg"],
    "rotated_copy": ["cat/img_02.jpg", "cat/rotated_02.jpg"],
    # readable oddities
    "cmyk": ["cup/cmyk.jpg"],
    "sixteen_bit": ["cup/sixteen.png"],
    "exif_rotated": ["cat/exif_rotated.jpg"],
}

#: hostile corpus: relative path (str, as the index holds it) -> expected reason
#: substring, or None when the file must decode fine
NON_UTF8_NAME = os.fsdecode(b"latin1_\xe9t\xe9.jpg")
HOSTILE: dict[str, str | None] = {
    "good.jpg": None,
    "good.png": None,
    "truncated.jpg": "truncated",
    "zero_bytes.jpg": "zero-byte",
    "text_named.jpg": "not an image",
    "palette_transparent.png": None,
    "cmyk.jpg": None,
    "sixteen_bit.png": None,
    "exif_rotated.jpg": None,
    "one_pixel.png": None,
    "bomb_header.png": "decompression bomb",
    "name with spaces.jpg": None,
    "ünïcödé 名前.jpg": None,
    NON_UTF8_NAME: None,
    "loop.jpg": "symlink loop",
    "broken_link.jpg": "broken symlink",
    "sub/nested.jpg": None,
}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGAUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("imgaudit-cache")))
    monkeypatch.setenv("FIFTYONE_DATABASE_VALIDATION", "false")
    monkeypatch.setenv("FIFTYONE_DO_NOT_TRACK", "true")


# -- image makers ------------------------------------------------------------------------


@functools.cache
def _source(name: str) -> np.ndarray:
    import skimage.data

    arr = getattr(skimage.data, name)()
    return np.ascontiguousarray(arr[..., :3])


def photo(name: str, seed: int, size: tuple[int, int] = (128, 96)) -> Image.Image:
    """A seeded crop of a scikit-image photo, resized to ``size`` (w, h)."""
    arr = _source(name)
    rng = np.random.default_rng(seed)
    h, w = arr.shape[:2]
    cw = int(w * rng.uniform(0.5, 0.8))
    ch = min(h, int(cw * size[1] / size[0]))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return Image.fromarray(arr[y0 : y0 + ch, x0 : x0 + cw]).resize(size, Image.Resampling.LANCZOS)


def jpeg_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def exif_rotated_jpeg(img: Image.Image, orientation: int = 6) -> bytes:
    """JPEG storing ``img`` as is, with an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg_bytes(img, exif=exif.tobytes())


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose IHDR claims ``width x height`` (valid CRCs, almost no data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def palette_transparent(img: Image.Image) -> Image.Image:
    p = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    p.info["transparency"] = 0
    return p


def sixteen_bit(img: Image.Image) -> Image.Image:
    arr = np.asarray(img.convert("L")).astype(np.uint16) * 257
    return Image.fromarray(arr)  # mode I;16


def _write(path: Path | bytes, data: bytes) -> None:
    p = os.fsencode(path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as fh:
        fh.write(data)


# -- source trees --------------------------------------------------------------------------


def build_dataset(root: Path) -> Path:
    """Write the seeded class-folder dataset of :data:`PLANTED` under ``root``."""
    cats = [photo("chelsea", s) for s in range(6)]
    cups = [photo("coffee", 100 + s) for s in range(6)]
    for i, im in enumerate(cats):
        _write(root / f"cat/img_{i:02d}.jpg", jpeg_bytes(im))
    for i, im in enumerate(cups):
        _write(root / f"cup/img_{i:02d}.jpg", jpeg_bytes(im))
    base = photo("chelsea", 50)
    arr = np.asarray(base).astype(np.float32)
    _write(root / "cat/dark.jpg", jpeg_bytes(Image.fromarray((arr * 0.12).astype(np.uint8))))
    _write(root / "cat/light.jpg", jpeg_bytes(Image.fromarray((255 - (255 - arr) * 0.08).astype(np.uint8))))
    _write(root / "cup/blurry.jpg", jpeg_bytes(photo("coffee", 150).filter(ImageFilter.GaussianBlur(3))))
    _write(root / "cup/blank.png", png_bytes(Image.new("RGB", (128, 96), (140, 120, 100))))
    _write(root / "cat/gray_rgb.png", png_bytes(photo("chelsea", 51).convert("L").convert("RGB")))
    _write(root / "cat/tiny.png", png_bytes(photo("chelsea", 52, (20, 16))))
    _write(root / "cup/wide.jpg", jpeg_bytes(photo("coffee", 151, (256, 64))))
    _write(root / "cup/big.jpg", jpeg_bytes(photo("coffee", 152, (1024, 768))))
    good = jpeg_bytes(photo("chelsea", 53))
    _write(root / "cat/corrupt.jpg", good[:200] + np.random.default_rng(0).bytes(len(good) - 200))
    _write(root / "cup/copy_of_cat_00.jpg", (root / "cat/img_00.jpg").read_bytes())
    _write(root / "cat/resized_01.jpg", jpeg_bytes(cats[1].resize((96, 72), Image.Resampling.LANCZOS)))
    _write(root / "cat/rotated_02.jpg", jpeg_bytes(cats[2].transpose(Image.Transpose.ROTATE_90)))
    _write(root / "cup/cmyk.jpg", jpeg_bytes(photo("coffee", 153).convert("CMYK")))
    _write(root / "cup/sixteen.png", png_bytes(sixteen_bit(photo("coffee", 154))))
    _write(root / "cat/exif_rotated.jpg", exif_rotated_jpeg(photo("chelsea", 54)))
    return root


def build_hostile(root: Path) -> Path:
    """Write the hostile corpus of :data:`HOSTILE` (plus skipped non-images) under ``root``."""
    good = photo("astronaut", 1)
    _write(root / "good.jpg", jpeg_bytes(good))
    _write(root / "good.png", png_bytes(photo("astronaut", 2)))
    full = jpeg_bytes(photo("astronaut", 3, (256, 192)))
    _write(root / "truncated.jpg", full[: len(full) * 6 // 10])
    _write(root / "zero_bytes.jpg", b"")
    _write(root / "text_named.jpg", b"this is a text file, not a JPEG\n" * 8)
    _write(root / "palette_transparent.png", png_bytes(palette_transparent(photo("astronaut", 4))))
    _write(root / "cmyk.jpg", jpeg_bytes(photo("astronaut", 5).convert("CMYK")))
    _write(root / "sixteen_bit.png", png_bytes(sixteen_bit(photo("astronaut", 6))))
    _write(root / "exif_rotated.jpg", exif_rotated_jpeg(photo("astronaut", 7)))
    _write(root / "one_pixel.png", png_bytes(Image.new("RGB", (1, 1), (200, 10, 10))))
    _write(root / "bomb_header.png", bomb_png())
    _write(root / "name with spaces.jpg", jpeg_bytes(photo("astronaut", 8)))
    _write(root / "ünïcödé 名前.jpg", jpeg_bytes(photo("astronaut", 9)))
    _write(os.path.join(os.fsencode(root), os.fsencode(NON_UTF8_NAME)), jpeg_bytes(photo("astronaut", 10)))
    _write(root / "sub/nested.jpg", jpeg_bytes(photo("astronaut", 11)))
    os.symlink("loop.jpg", root / "loop.jpg")  # a symlink to itself: ELOOP
    os.symlink("does_not_exist.jpg", root / "broken_link.jpg")
    os.symlink("..", root / "sub/up")  # a directory symlink loop: sub/up/sub/up/...
    _write(root / "notes.txt", b"not an image\n")
    _write(root / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    return root


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Class folders ``cat/``, ``cup/`` with the planted problems of :data:`PLANTED`."""
    return build_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hostile corpus of :data:`HOSTILE` (plus ``notes.txt``, ``.DS_Store``, ``sub/up``)."""
    return build_hostile(tmp_path_factory.mktemp("hostile"))


def tree_checksum(root: str | os.PathLike[str]) -> str:
    """Digest of everything under ``root``: names, types, sizes, mtimes, contents,
    symlink targets. Symlinks are never followed (so loops are fine)."""
    h = hashlib.sha256()
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(os.path.relpath(p, base) + b"\0" + f"{st.st_mode}:{st.st_mtime_ns}".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(b"->" + os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    h.update(f"{st.st_size}:".encode() + hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


@pytest.fixture(name="tree_checksum")
def tree_checksum_fixture() -> Callable[[str | os.PathLike[str]], str]:
    """The :func:`tree_checksum` function."""
    return tree_checksum
