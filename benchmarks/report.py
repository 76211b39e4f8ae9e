"""Benchmark: HTML report generation for a 20,000-image audit result.

Builds a synthetic result shaped exactly like ``AuditResult`` (every issue type of the
contract, duplicate groups, label suggestions, rotation suggestions, unreadable files,
a rotation verdict and a recommendation) over 20,000 real small JPEG files, then times
``write_report`` twice:

1. cold: no thumbnail cached, every gallery thumbnail is made from its source file
   through the library's image loader (and cached): the first report after an audit
   (the decode pass makes no thumbnails);
2. warm: thumbnails come from the cache (every later report of the same data).

Prints the timings, the report size and the number of thumbnails embedded.
Target: under 30 s on the 2-core development machine.

Run: ``.venv/bin/python benchmarks/report.py [--n 20000]``; data under ``.bench/report``.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from imgaudit.cache import Cache
from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.export.report import thumb_namespace, write_report
from imgaudit.result import AuditResult

BENCH = Path(__file__).resolve().parent.parent / ".bench" / "report"
TYPES = (
    "unreadable",
    "low_resolution",
    "odd_aspect_ratio",
    "odd_size",
    "grayscale",
    "dark",
    "light",
    "blurry",
    "low_information",
    "exact_duplicates",
    "near_duplicates",
    "label",
    "rotation",
)


def make_files(root: Path, n: int, n_classes: int, rng: np.random.Generator) -> pd.DataFrame:
    """Write ``n`` small JPEGs in class folders (reused when already there)."""
    classes = [f"class_{i:02d}" for i in range(n_classes)]
    labels = rng.choice(classes, size=n)
    paths = [f"{c}/img_{i:06d}.jpg" for i, c in enumerate(labels)]
    # drawn whether or not the files exist, so that the result is the same either way
    base = rng.integers(0, 255, size=(24, 24, 3), dtype=np.uint8)
    marker = root / f".complete_v3_{n}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        for c in classes:
            (root / c).mkdir(parents=True, exist_ok=True)
        for i, p in enumerate(paths):
            arr = np.roll(base, i % 24, axis=i % 2) // (1 + i % 3)
            # a per-file pixel code: every file (and sha1) is distinct, like real data
            arr[0, :3] = [(i >> 16) & 255, (i >> 8) & 255, i & 255]
            img = Image.fromarray(arr).resize((96, 64 + (i % 5) * 16))
            img.save(root / p, quality=80)
        marker.touch()
    w = 96 * np.ones(n, dtype=int)
    h = 64 + (np.arange(n) % 5) * 16
    df = pd.DataFrame(
        {
            "label": labels,
            "split": np.where(rng.random(n) < 0.2, "valid", "train"),
            "width": w * 4,
            "height": h * 4,
        },
        index=pd.Index(paths, name="path"),
    )
    df["sha1"] = [hashlib.sha1((root / p).read_bytes()).hexdigest() for p in paths]
    return df


def make_result(
    root: Path, df: pd.DataFrame, rng: np.random.Generator, cache_dir: Path
) -> AuditResult:
    n = len(df)
    for t in TYPES:
        flag = rng.random(n) < 0.05
        df[issue_col(t)] = flag
        df[score_col(t)] = np.where(flag, rng.random(n) * 0.5, 0.5 + rng.random(n) * 0.5)
    unread = df[issue_col("unreadable")]
    df[extra_col("unreadable", "reason")] = np.where(
        unread, "truncated: image file is truncated", None
    )
    for t in ("exact_duplicates", "near_duplicates"):
        group = np.full(n, -1)
        members = np.flatnonzero(rng.random(n) < 0.08)
        group[members] = np.arange(len(members)) // 3
        keep = np.zeros(n, dtype=bool)
        _, first = np.unique(group[members], return_index=True)
        keep[members[first]] = True
        df[extra_col(t, "group")] = group
        df[extra_col(t, "keep")] = keep
        df[issue_col(t)] = (group >= 0) & ~keep
    classes = sorted(df["label"].unique())
    df[extra_col("label", "suggested")] = rng.choice(classes, size=n)
    df[extra_col("label", "confidence")] = rng.random(n)
    df[extra_col("rotation", "suggested")] = np.where(
        df[issue_col("rotation")], rng.choice([90, 180, 270], size=n), 0
    )
    views = {
        v: {
            "verdict": rng.choice(["safe", "unsafe", "unclear"]),
            "accuracy": 0.5,
            "accuracy_identity": 0.9,
            "retention": 0.4,
            "retention_low": 0.3,
            "retention_high": 0.5,
            "agreement": 0.5,
            "evidence": "synthetic",
        }
        for v in ("rot90", "rot180", "rot270", "flip_h", "flip_v")
    }
    info = {
        "imageset": {"n_images": n},
        "rotation": {
            "n_images": n,
            "sensitive": True,
            "views": views,
            "per_class": {c: views for c in classes},
            "pairs": {
                "rot180": [{"from": classes[0], "to": classes[1], "count": 40, "fraction": 0.3}]
            },
        },
    }
    rec = {
        "code": "dls = ImageDataLoaders.from_csv(path, 'cleaned.csv', item_tfms=Resize(224))",
        "reasons": ["synthetic"],
        "warnings": [],
    }
    return AuditResult(
        df,
        info=info,
        recommendations=rec,
        config={"size": 224, "cache_dir": str(cache_dir), "thumbnail_size": 128},
        root=root,
        issue_types=list(TYPES),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--max-per-gallery", type=int, default=40)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    root = BENCH / "images"
    t0 = time.perf_counter()
    df = make_files(root, args.n, args.classes, rng)
    cache_dir = BENCH / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    result = make_result(root, df, rng, cache_dir)
    print(
        f"data: {args.n:,} images, {len(TYPES)} issue types, "
        f"{int(result.summary['num_issues'].sum()):,} issue flags "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )

    out = BENCH / "report.html"
    t = time.perf_counter()
    write_report(result, out, max_per_gallery=args.max_per_gallery)
    cold = time.perf_counter() - t
    cache = Cache(cache_dir)
    n_cached = len(cache.keys(thumb_namespace(128)))
    cache.close()
    t = time.perf_counter()
    write_report(result, out, max_per_gallery=args.max_per_gallery)
    warm = time.perf_counter() - t
    text = out.read_text(encoding="utf-8")
    n_img = len(re.findall(r'<img[^>]* src="data:image/', text))
    size_mb = out.stat().st_size / 1e6
    print(f"cold (thumbnails made from source files, {n_cached} cached): {cold:.2f} s")
    print(f"warm (thumbnails from the cache):                          {warm:.2f} s")
    print(
        f"report: {size_mb:.1f} MB, {n_img} embedded images, galleries capped at "
        f"{args.max_per_gallery} per issue type"
    )
    print(f"target < 30 s: {'met' if max(cold, warm) < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
