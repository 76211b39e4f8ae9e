from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import bomb_png, exif_rotated_jpeg, jpeg_bytes, photo, png_bytes, sixteen_bit
from PIL import Image

from imgaudit import imaging
from imgaudit.imaging import UnreadableImage, load_image, load_rgb, to_rgb


def _reason(data: bytes, **kw: object) -> str:
    with pytest.raises(UnreadableImage) as exc:
        load_image(data, **kw)  # type: ignore[arg-type]
    return exc.value.reason


def test_rgb_jpeg_properties() -> None:
    li = load_image(jpeg_bytes(photo("coffee", 0)))
    assert (li.width, li.height, li.mode, li.channels, li.format, li.exif_orientation) == (128, 96, "RGB", 3, "JPEG", 0)
    assert li.image.mode == "RGB" and li.image.size == (128, 96)


def test_draft_decodes_jpeg_at_reduced_scale_not_below_decode_size() -> None:
    data = jpeg_bytes(photo("astronaut", 0, (1024, 768)))
    li = load_image(data, decode_size=256)
    assert (li.width, li.height) == (1024, 768)  # full size is reported
    assert li.image.size == (512, 384)  # 1/2 scale: 1/4 would give a short side of 192 < 256
    li = load_image(data, decode_size=96)
    assert li.image.size == (128, 96)  # 1/8: the largest draft scale
    assert load_image(data).image.size == (1024, 768)


def test_non_jpeg_is_box_reduced_to_decode_size() -> None:
    li = load_image(png_bytes(photo("astronaut", 0, (1024, 768))), decode_size=256)
    assert li.image.size == (342, 256)  # reduce(3) rounds partial blocks up
    assert min(li.image.size) >= 256


def test_exif_orientation_is_applied_and_reported() -> None:
    stored = photo("chelsea", 3)  # 128x96 as stored
    li = load_image(exif_rotated_jpeg(stored, 6))
    assert li.exif_orientation == 6
    assert (li.width, li.height) == (96, 128)
    assert li.image.size == (96, 128)
    upright = np.asarray(Image.open(io.BytesIO(exif_rotated_jpeg(stored, 6))).convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(np.asarray(li.image), upright)


def test_exif_orientation_with_draft_swaps_full_size() -> None:
    li = load_image(exif_rotated_jpeg(photo("astronaut", 1, (1024, 768)), 8), decode_size=128)
    assert (li.width, li.height) == (768, 1024)
    assert li.image.size[0] < li.image.size[1]


def test_palette_transparency_is_composited_on_white() -> None:
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.putpixel((0, 0), 1)
    p.info["transparency"] = 0  # index 0 (black) is transparent
    rgb = np.asarray(load_image(png_bytes(p, transparency=0)).image)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[1, 1]) == (255, 255, 255)


def test_rgba_and_la_composite_on_white() -> None:
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 128))
    out = np.asarray(load_image(png_bytes(rgba)).image)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert out[0, 1, 2] == 255 and 120 < out[0, 1, 0] < 135  # half blue over white
    la = Image.new("LA", (1, 1), (0, 0))
    assert tuple(np.asarray(load_image(png_bytes(la)).image)[0, 0]) == (255, 255, 255)


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    arr = np.array([[0, 257 * 100, 65535, 30000]], dtype=np.uint16)
    li = load_image(png_bytes(Image.fromarray(arr)))
    assert li.mode.startswith("I;16")
    assert np.asarray(li.image)[0, :, 0].tolist() == [0, 100, 255, 30000 >> 8]
    # a real 16-bit photo keeps its contrast (PIL's naive convert would clip to white)
    img = load_image(png_bytes(sixteen_bit(photo("coffee", 1)))).image
    assert 20 < np.asarray(img).mean() < 235 and np.asarray(img).std() > 10


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [0, 255], [0, 255]),  # 8-bit range stored as 32-bit
        ("I", [0, 65535], [0, 255]),  # 16-bit range
        ("I", [-100, 100], [0, 255]),  # signed: stretched
        ("F", [0.0, 1.0], [0, 255]),  # unit floats
        ("F", [10.0, 30.0], [0, 255]),  # arbitrary floats: stretched
    ],
)
def test_wide_modes_to_rgb(mode: str, values: list[float], expected: list[int]) -> None:
    dtype = np.int32 if mode == "I" else np.float32
    im = Image.fromarray(np.array([values], dtype=dtype), mode)
    assert np.asarray(to_rgb(im))[0, :, 0].tolist() == expected


def test_cmyk_and_one_bit_convert() -> None:
    li = load_image(jpeg_bytes(photo("coffee", 2).convert("CMYK")))
    assert li.mode == "CMYK" and li.channels == 4 and li.image.mode == "RGB"
    ref = np.asarray(photo("coffee", 2), dtype=float)
    assert np.abs(np.asarray(li.image, dtype=float) - ref).mean() < 20
    one = Image.new("1", (3, 3), 1)
    assert np.asarray(load_image(png_bytes(one)).image).min() == 255


def test_one_pixel_image_is_readable() -> None:
    li = load_image(png_bytes(Image.new("RGB", (1, 1), (1, 2, 3))), decode_size=256)
    assert li.image.size == (1, 1)


def test_unreadable_reasons() -> None:
    good = jpeg_bytes(photo("coffee", 3, (256, 192)))
    assert _reason(b"") == "zero-byte file"
    assert _reason(good[: len(good) // 2]).startswith("truncated:")
    assert _reason(b"hello, I am plain text\n" * 10) == "not an image: the file contains text"
    assert _reason(bytes(range(256)) * 4).startswith("not an image:")
    assert _reason(good[:20] + b"\x00" * 50).startswith("corrupt: JPEG")
    reason = _reason(bomb_png())
    assert reason.startswith("decompression bomb:")
    assert "30000" in reason or "900000000" in reason


def test_bomb_guard_runs_before_decoding() -> None:
    # a valid 64x64 image refused by a small max_pixels: refused from the header
    reason = _reason(png_bytes(photo("coffee", 4, (64, 64))), max_pixels=1000)
    assert reason == "decompression bomb: header claims 64x64 = 4096 pixels > max_pixels 1000"


def test_missing_file_reason(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="cannot open file"):
        load_rgb(tmp_path / "nope.jpg")


def test_load_rgb_from_path(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(png_bytes(photo("coffee", 5)))
    img = load_rgb(p)
    assert img.mode == "RGB" and img.size == (128, 96)


def test_no_blanket_exception_handlers() -> None:
    # DESIGN rule 3: catch specific errors and say why, never swallow everything
    src = Path(imaging.__file__).read_text()
    assert not re.search(r"except\s+(Exception|BaseException)\s*:", src)
    assert not re.search(r"except\s*:", src)


def _jpeg_variants() -> dict[str, bytes]:
    img = photo("astronaut", 5, (333, 251))  # odd sizes: partial MCUs at every scale
    out = {}
    for sub in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
        out[f"subsampling{sub}"] = jpeg_bytes(img, subsampling=sub)
    out["progressive"] = jpeg_bytes(img, progressive=True)
    out["gray"] = jpeg_bytes(img.convert("L"))
    out["exif6"] = exif_rotated_jpeg(img, 6)
    buf = io.BytesIO()
    img.convert("CMYK").save(buf, format="JPEG")
    out["cmyk"] = buf.getvalue()
    return out


@pytest.mark.skipif(imaging._simplejpeg is None, reason="simplejpeg not installed")
@pytest.mark.parametrize("decode_size", [None, 32, 64, 100, 200])
def test_fast_jpeg_path_gives_pillows_pixels(decode_size: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, data in _jpeg_variants().items():
        fast = load_image(data, decode_size=decode_size)
        with monkeypatch.context() as m:
            m.setattr(imaging, "_simplejpeg", None)
            slow = load_image(data, decode_size=decode_size)
        assert (fast.width, fast.height, fast.mode, fast.channels, fast.exif_orientation) == (
            slow.width, slow.height, slow.mode, slow.channels, slow.exif_orientation), name  # fmt: skip
        assert fast.image.mode == "RGB" and fast.image.size == slow.image.size, (name, fast.image.size, slow.image.size)
        assert np.array_equal(np.asarray(fast.image), np.asarray(slow.image)), name


@pytest.mark.skipif(imaging._simplejpeg is None, reason="simplejpeg not installed")
def test_fast_jpeg_path_falls_back_for_broken_files(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = imaging._fast_jpeg

    def spy(*a: object) -> object:
        out = real(*a)  # type: ignore[arg-type]
        calls.append(out is None)
        return out

    monkeypatch.setattr(imaging, "_fast_jpeg", spy)
    good = jpeg_bytes(photo("coffee", 3, (256, 192)))
    assert load_image(good, decode_size=64).image.size == (128, 96)
    assert _reason(good[: len(good) // 2], decode_size=64).startswith("truncated:")
    assert calls == [False, True]  # the fast path decoded the good file, refused the truncated one
