"""Benchmark: duplicate detection quality, hashing speed and Hamming-search scale.

Run ``python benchmarks/duplicates.py`` (add ``--quick`` for a smaller search
section). Builds everything it needs under ``.bench/duplicates`` from real photos
(Debian's opencv-doc example data and scikit-image's bundled images) and prints:

1. quality: ~300+ distinct crops, half of them given 10 variants (resize 50%,
   JPEG q30, 5% border crop, brightness +25%, blur radius 1, grayscale, small text
   watermark, horizontal flip, rotate 90, rotate 5 degrees). Pairwise precision,
   recall, F1 and per-transform recall (original vs variant) plus wall time for
   imgaudit's near_duplicates at its defaults, imagededup's
   ``PHash().find_duplicates(max_distance_threshold=10)`` and a plain
   imagehash-phash loop (all pairs within 10 bits). Also the distance
   distributions the default radius was chosen from.
2. hashing speed: images/s of imgaudit's shared decode pass (which computes the
   8-view hashes) on >= 2,000 ~1024 px JPEGs vs ``imagehash.phash(Image.open(p))``.
3. search: 10^5 and 10^6 random 64-bit codes with 10^4 planted pairs (1..8 bits
   apart), radius 8: time, peak memory, exactness against brute force on a sample,
   numpy brute force and faiss baselines at 10^5.

Nothing is hard-coded: every number printed is measured in this run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench" / "duplicates"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")

# Real photos only, one of each near-identical pair (stereo pairs, calibration
# series, before/after edits are left out: their crops would be true duplicates
# that the ground truth calls distinct).
OPENCV_PHOTOS = [
    "Blender_Suzanne1.jpg", "HappyFish.jpg", "aero1.jpg", "aloeL.jpg", "apple.jpg",
    "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg", "ela_original.jpg",
    "fruits.jpg", "graf1.png", "home.jpg", "left.jpg", "leuvenA.jpg",
    "licenseplate_motion.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg",
    "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "starry_night.jpg",
    "stuff.jpg", "sudoku.png", "text_defocus.jpg", "basketball1.png", "box_in_scene.png",
]
SKIMAGE_PHOTOS = [
    "astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "cell",
    "clock", "page", "text",
]
TRANSFORMS = [
    "resize50", "jpeg30", "crop5", "bright25", "blur1", "gray", "watermark", "hflip",
    "rot90", "rot5",
]
CELL = 160  # crop side (pixels): non-overlapping grid cells of each photo
MAX_CROPS_PER_PHOTO = 12


def load_photos() -> dict[str, Image.Image]:
    import skimage.data

    photos: dict[str, Image.Image] = {}
    for name in OPENCV_PHOTOS:
        p = OPENCV_DATA / name
        if p.exists():
            photos[f"cv_{p.stem}"] = Image.open(p).convert("RGB")
    for name in SKIMAGE_PHOTOS:
        arr = getattr(skimage.data, name)()
        photos[f"sk_{name}"] = Image.fromarray(arr).convert("RGB")
    return photos


def make_crops(photos: dict[str, Image.Image], seed: int = 0) -> dict[str, Image.Image]:
    """Non-overlapping grid cells; near-uniform cells (std < 12) are skipped."""
    rng = np.random.default_rng(seed)
    crops: dict[str, Image.Image] = {}
    for name, img in photos.items():
        w, h = img.size
        cells = [(x, y) for y in range(0, h - CELL + 1, CELL) for x in range(0, w - CELL + 1, CELL)]
        rng.shuffle(cells)
        taken = 0
        for x, y in cells:
            crop = img.crop((x, y, x + CELL, y + CELL))
            if np.asarray(crop.convert("L"), dtype=float).std() < 12:
                continue
            crops[f"{name}_{x}_{y}"] = crop
            taken += 1
            if taken >= MAX_CROPS_PER_PHOTO:
                break
    return crops


def variant(img: Image.Image, kind: str) -> Image.Image:
    w, h = img.size
    if kind == "resize50":
        return img.resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    if kind == "crop5":
        dx, dy = round(0.05 * w), round(0.05 * h)
        return img.crop((dx, dy, w - dx, h - dy))
    if kind == "bright25":
        return ImageEnhance.Brightness(img).enhance(1.25)
    if kind == "blur1":
        return img.filter(ImageFilter.GaussianBlur(1))
    if kind == "gray":
        return img.convert("L")
    if kind == "watermark":
        out = img.copy()
        ImageDraw.Draw(out).text((w // 2, h - 14), "(c) 2024", fill=(255, 255, 255))
        return out
    if kind == "hflip":
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if kind == "rot90":
        return img.transpose(Image.Transpose.ROTATE_90)
    if kind == "rot5":
        return img.rotate(5, resample=Image.Resampling.BICUBIC)
    if kind == "jpeg30":
        return img  # the quality is applied when saving
    raise ValueError(kind)


def build_quality_set(seed: int = 0) -> tuple[Path, dict[str, tuple[str, str | None]]]:
    """Write crops and variants; return the folder and ``{file: (source crop, transform)}``."""
    out = BENCH / "quality"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    crops = make_crops(load_photos(), seed)
    rng = np.random.default_rng(seed)
    names = sorted(crops)
    with_variants = set(rng.choice(names, size=len(names) // 2, replace=False).tolist())
    truth: dict[str, tuple[str, str | None]] = {}
    for name in names:
        crop = crops[name]
        fn = f"{name}.png"
        crop.save(out / fn)
        truth[fn] = (name, None)
        if name not in with_variants:
            continue
        for kind in TRANSFORMS:
            v = variant(crop, kind)
            if kind == "jpeg30":
                fn = f"{name}__{kind}.jpg"
                v.save(out / fn, quality=30)
            else:
                fn = f"{name}__{kind}.png"
                v.save(out / fn)
            truth[fn] = (name, kind)
    return out, truth


def true_pairs(truth: dict[str, tuple[str, str | None]]) -> set[tuple[str, str]]:
    groups: dict[str, list[str]] = {}
    for fn, (src, _) in truth.items():
        groups.setdefault(src, []).append(fn)
    pairs = set()
    for members in groups.values():
        for a, b in itertools.combinations(sorted(members), 2):
            pairs.add((a, b))
    return pairs


def score(pred: set[tuple[str, str]], truth: dict[str, tuple[str, str | None]]) -> dict[str, float]:
    gold = true_pairs(truth)
    pred = {tuple(sorted(p)) for p in pred}  # type: ignore[misc]
    tp = len(pred & gold)
    precision = tp / len(pred) if pred else 1.0
    recall = tp / len(gold) if gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    res = {"pairs": len(pred), "precision": precision, "recall": recall, "f1": f1}
    for kind in TRANSFORMS:
        origs = [(f"{src}.png", fn) for fn, (src, k) in truth.items() if k == kind]
        hit = sum(tuple(sorted(p)) in pred for p in origs)
        res[kind] = hit / len(origs) if origs else float("nan")
    return res


def pairs_from_groups(groups: list[list[str]]) -> set[tuple[str, str]]:
    out = set()
    for g in groups:
        for a, b in itertools.combinations(sorted(g), 2):
            out.add((a, b))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
