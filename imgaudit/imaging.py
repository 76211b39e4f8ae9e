"""The one safe image loader of the library.

Every module that needs pixels goes through :func:`load_image` (or its thin
wrapper :func:`load_rgb`), so that all of imgaudit agrees on what an image looks
like and on why a file cannot be read:

1. the header's pixel count is checked against ``max_pixels`` *before* any pixel
   is decoded (decompression bombs never allocate);
2. JPEGs are decoded at the smallest power-of-two scale whose short side is still
   at least ``decode_size`` (2-8x less decoding work): by libjpeg-turbo through
   ``simplejpeg`` when it is installed and the JPEG is plain YCbCr or grey (one C
   call from memory; ~10% faster than Pillow's chunked decoder, same pixels), else
   by Pillow in ``draft`` mode;
3. every mode becomes RGB the way a viewer shows it: palette/LA/RGBA transparency
   is composited on white, CMYK/YCbCr/1-bit are converted, 16-bit and 32-bit
   integer and float images are scaled to 8 bits (not clipped);
4. the EXIF orientation tag is applied (and reported), so widths, heights and
   pixels are "as displayed";
5. anything that goes wrong raises :class:`UnreadableImage` whose ``reason`` is a
   short human sentence ("truncated: ...", "zero-byte file", ...). The text before
   the first ``:`` is the kind of failure, used for grouping in summaries.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

#: default decompression-bomb guard (same value as ``AuditConfig.max_pixels``)
DEFAULT_MAX_PIXELS = 89_478_485

#: file name extensions imgaudit treats as images when scanning folders
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".tif", ".tiff",
        ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".jp2", ".j2k", ".jpx", ".avif",
        ".heic", ".heif", ".ico", ".pcx", ".sgi", ".im", ".dds", ".qoi",
    }
)  # fmt: skip

# Exceptions Pillow's decoders are known to raise on malformed input. A file that
# raises one of these is unreadable, with the exception as its reason; anything
# else (a bug of ours) propagates.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    NotImplementedError,
    RecursionError,
    MemoryError,
    Image.DecompressionBombError,
)

# EXIF orientation -> the transpose that displays the image upright
_ORIENTATION_OPS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112


# leading bytes of common formats: a file that starts like an image but cannot be
# identified is corrupt, not "not an image"
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff(head: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


class UnreadableImage(Exception):
    """A file that cannot be decoded; ``reason`` says why in one short sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class LoadedImage:
    """A decoded image and the properties of the file it came from.

    Attributes
    ----------
    image
        RGB image, EXIF orientation applied, at decode scale (its short side is at
        least ``decode_size`` unless the file is smaller; full size when
        ``decode_size`` is None).
    width, height
        Full-resolution size as displayed (EXIF orientation applied).
    mode
        Pillow mode of the stored image ("RGB", "P", "I;16", "CMYK", ...).
    channels
        Number of bands of the stored mode (a palette image has 1).
    format
        Pillow format name ("JPEG", "PNG", ...).
    exif_orientation
        EXIF orientation tag (1-8), 0 when absent or invalid.
    """

    image: Image.Image
    width: int
    height: int
    mode: str
    channels: int
    format: str | None
    exif_orientation: int


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * len(text)


def _describe(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    low = msg.lower()
    if isinstance(exc, Image.DecompressionBombError):
        return f"decompression bomb: {msg}"
    if isinstance(exc, EOFError) or "truncated" in low or "premature end" in low:
        return f"truncated: {msg}"
    if isinstance(exc, MemoryError):
        return "out of memory while decoding"
    return f"corrupt: {type(exc).__name__}: {msg}"


def _composite_on_white(im: Image.Image) -> Image.Image:
    """Composite an RGBA image on a white background (how viewers show it)."""
    bg = Image.new("RGB", im.size, (255, 255, 255))
    bg.paste(im.convert("RGB"), (0, 0), im.getchannel("A"))
    return bg


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale a high-bit-depth single-channel array to uint8 without clipping."""
    if mode.startswith("I;16"):
        # full 16-bit range: 65535 -> 255, and 8-bit data stored as 16 (k * 257) -> k
        return (arr.astype(np.uint32) >> 8).astype(np.uint8)
    a = arr.astype(np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(finite.min()), float(finite.max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        out = a * 255.0
    elif mode == "I" and lo >= 0 and hi <= 255:
        out = a
    elif mode == "I" and lo >= 0 and hi <= 65535:
        out = a / 257.0
    else:
        # arbitrary range (signed ints, HDR floats): stretch min..max
        out = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.nan_to_num(out), 0, 255).round().astype(np.uint8)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the way an image viewer shows it.

    Transparency is composited on white; 16/32-bit integer and float images are
    scaled (not clipped) to 8 bits. Raises :class:`UnreadableImage` for modes
    Pillow cannot convert.
    """
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        if "transparency" in im.info:
            return _composite_on_white(im.convert("RGBA"))
        return im.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _composite_on_white(im if mode == "RGBA" else im.convert("RGBA"))
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(im), mode), "L").convert("RGB")
    try:
        return im.convert("RGB")
    except ValueError as exc:
        raise UnreadableImage(f"unsupported mode: {mode} ({exc})") from exc


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_EXIF_ORIENTATION_TAG, 0)
    except _DECODE_ERRORS:
        # a broken EXIF block does not make the pixels unreadable
        return 0
    return value if isinstance(value, int) and 1 <= value <= 8 else 0


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode_size: int | None = None,
) -> LoadedImage:
    """Decode one image safely.

    Parameters
    ----------
    source
        A path, or the file's bytes (the decode pass reads each file once and
        hashes the same bytes).
    max_pixels
        Refuse (as a decompression bomb) any image whose header claims more pixels.
    decode_size
        Target short side. JPEGs decode in draft mode at the smallest power-of-two
        scale that keeps the short side at least this big; other formats are
        box-reduced by an integer factor to the same bound. ``None``: full size.

    Returns
    -------
    LoadedImage

    Raises
    ------
    UnreadableImage
        With ``reason`` saying why (zero-byte file, not an image, decompression
        bomb, truncated, corrupt, unsupported mode, cannot open file).

    Examples
    --------
    >>> li = load_image("cat.jpg", decode_size=256)  # doctest: +SKIP
    >>> li.image.mode, li.width, li.height  # doctest: +SKIP
    ('RGB', 1024, 768)
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            with open(source, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise UnreadableImage(f"cannot open file: {exc.strerror or exc}") from exc
    return _decode_bytes(data, max_pixels, decode_size)


try:  # optional fast path for JPEGs (see the module docstring)
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    _simplejpeg = None


def _fast_jpeg(data: bytes, im: Image.Image, size: tuple[int, int]) -> Image.Image | None:
    """``data`` decoded by libjpeg-turbo at the smallest scale of at least ``size``,
    in ``im``'s mode (RGB or L); None when the fast path does not apply or fails
    (Pillow then decodes the file and says what is wrong with it)."""
    if _simplejpeg is None or im.mode not in ("RGB", "L"):
        return None
    try:
        # strict (the default): a warning (a truncated file, say) raises
        arr = _simplejpeg.decode_jpeg(
            data, colorspace="RGB" if im.mode == "RGB" else "GRAY", min_width=size[0], min_height=size[1]
        )
    except (ValueError, RuntimeError, MemoryError):
        return None
    if im.mode == "L":
        return Image.fromarray(arr[:, :, 0], "L")
    return Image.fromarray(arr, "RGB")


def _decode_bytes(data: bytes, max_pixels: int, decode_size: int | None) -> LoadedImage:
    if not data:
        raise UnreadableImage("zero-byte file")
    with warnings.catch_warnings():
        # Pillow warns on odd-but-decodable files (big images, palette transparency,
        # corrupt EXIF); those are not the user's problem, and our own bomb guard
        # below is the one that decides.
        warnings.simplefilter("ignore")
        try:
            im = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as exc:
            fmt = _sniff(data[:16])
            if fmt is not None:
                raise UnreadableImage(f"corrupt: {fmt} signature but the header cannot be parsed") from exc
            if _looks_like_text(data[:512]):
                raise UnreadableImage("not an image: the file contains text") from exc
            raise UnreadableImage("not an image: unrecognised file format") from exc
        except _DECODE_ERRORS as exc:
            raise UnreadableImage(_describe(exc)) from exc
        # no im.close(): the returned RGB image may be ``im`` itself, and the
        # in-memory buffer needs no closing
        try:
            return _decode_open(im, max_pixels, decode_size, data)
        except _DECODE_ERRORS as exc:
            raise UnreadableImage(_describe(exc)) from exc


def _decode_open(im: Image.Image, max_pixels: int, decode_size: int | None, data: bytes | None = None) -> LoadedImage:
    full_w, full_h = im.size
    if full_w <= 0 or full_h <= 0:
        raise UnreadableImage(f"corrupt: header claims size {full_w}x{full_h}")
    if full_w * full_h > max_pixels:
        raise UnreadableImage(
            f"decompression bomb: header claims {full_w}x{full_h} = {full_w * full_h} pixels"
            f" > max_pixels {max_pixels}"
        )
    mode, fmt = im.mode, im.format
    channels = len(im.getbands())
    decoded: Image.Image | None = None
    if fmt == "JPEG":
        want = (full_w, full_h)
        short = min(full_w, full_h)
        if decode_size and short > decode_size:
            k = decode_size / short
            want = (max(1, int(full_w * k)), max(1, int(full_h * k)))
        if data is not None:
            # the power-of-two scale Pillow's draft picks for ``want``; asking
            # libjpeg-turbo for exactly that size keeps it off its other M/8 scales,
            # so both paths give the same pixels (and the same cached records)
            ratio = min(full_w // want[0], full_h // want[1])
            scale = next(f for f in (8, 4, 2, 1) if ratio >= f)
            decoded = _fast_jpeg(data, im, (-(-full_w // scale), -(-full_h // scale)))
        if decoded is None and want != (full_w, full_h):
            im.draft(im.mode, want)
    if decoded is None:
        im.load()
        decoded = im
    orientation = _exif_orientation(im)
    rgb = to_rgb(decoded)
    if decode_size:
        factor = min(rgb.size) // decode_size
        if factor >= 2:
            rgb = rgb.reduce(factor)
    op = _ORIENTATION_OPS.get(orientation)
    if op is not None:
        rgb = rgb.transpose(op)
    width, height = (full_h, full_w) if orientation in (5, 6, 7, 8) else (full_w, full_h)
    return LoadedImage(
        image=rgb,
        width=width,
        height=height,
        mode=mode,
        channels=channels,
        format=fmt,
        exif_orientation=orientation,
    )


def load_rgb(
    path: str | os.PathLike[str] | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode_size: int | None = None,
) -> Image.Image:
    """The RGB image as displayed (see :func:`load_image`); raises :class:`UnreadableImage`.

    Examples
    --------
    >>> img = load_rgb("cat.jpg")  # doctest: +SKIP
    """
    return load_image(path, max_pixels=max_pixels, decode_size=decode_size).image
