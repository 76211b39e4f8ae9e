"""Benchmark: images per second of the properties decode pass vs a plain loop.

Builds >= 2,000 real-photo JPEGs of ~1024 px (random crops / flips / exposure
changes of the opencv-doc sample photos and scikit-image's bundled photos,
quality 90) under ``.bench/properties/``, then times, in the same run and on the
same warm page cache:

- baseline: one image at a time, ``Image.open(p).convert("RGB")`` + numpy
  statistics (brightness mean/percentiles, chroma, contrast, Laplacian sharpness,
  histogram entropy) on the full-resolution array;
- ours, properties only: :func:`imgaudit.decode.run_decode_pass` with the cache
  disabled and no perceptual hashes (``hash_kinds=()``), workers = all cores;
- ours, full pass as ``audit()`` runs it (the default hash kinds; thumbnails are made later, for the images a report shows),
  for reference;
- blur sensitivity: 200 of the photos blurred (Gaussian, sigma 0/4/8/12 px at
  full size). First the share of each blurred set below the former absolute
  threshold (0.35, the rule before the peer-relative one); then the ``blurry`` check
  itself (default rule: absolute floor + blurrier than the peers) on datasets of the
  200 sharp photos in which 10% are replaced by their blurred copies: the share of
  blurred copies flagged (sensitivity) and of sharp photos flagged (false alarms),
  over 5 random draws; and on datasets blurred throughout (only the floor can flag).

Prints the measured numbers and the ratios. Usage::

    .venv/bin/python benchmarks/properties.py [--n 2000] [--workers N] [--blur-only]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".bench" / "properties"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "motorcycle_left", "retina")


def _sources() -> list[np.ndarray]:
    srcs: list[np.ndarray] = []
    if OPENCV_DATA.is_dir():
        for p in sorted(OPENCV_DATA.glob("*.jpg")):
            with Image.open(p) as im:
                if im.mode == "RGB" and min(im.size) >= 300:
                    srcs.append(np.asarray(im.convert("RGB")))
    import skimage.data

    for name in SKIMAGE_PHOTOS:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        try:
            arr = fn()
        except (OSError, ValueError):  # a fetcher that would need the network
            continue
        if arr.ndim == 3 and min(arr.shape[:2]) >= 300:
            srcs.append(np.ascontiguousarray(arr[..., :3]))
    return srcs


def build(n: int) -> list[Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    paths = [OUT / f"photo_{i:05d}.jpg" for i in range(n)]
    if all(p.exists() for p in paths):
        return paths
    srcs = _sources()
    rng = np.random.default_rng(0)
    for i, p in enumerate(paths):
        src = srcs[i % len(srcs)]
        h, w = src.shape[:2]
        s = rng.uniform(0.6, 1.0)
        ch, cw = int(h * s), int(w * s)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        im = Image.fromarray(src[y : y + ch, x : x + cw])
        long_side = int(rng.integers(960, 1100))
        k = long_side / max(im.size)
        im = im.resize((max(1, round(im.size[0] * k)), max(1, round(im.size[1] * k))), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        gain = rng.uniform(0.7, 1.2)
        im = Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) * gain, 0, 255).astype(np.uint8))
        im.save(p, format="JPEG", quality=90)
    return paths


def baseline_stats(p: Path) -> dict[str, float]:
    """The plain way: full decode, then the same statistics with the same numpy
    idioms as ours (histogram percentiles, per-plane channel extremes), on the
    full-resolution array, so that the comparison measures the pass's design
    (draft decoding, small statistics image, processes), not numpy tricks."""
    a = np.asarray(Image.open(p).convert("RGB"))
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    gray = (0.299 * r + 0.587 * g + 0.114 * b).astype(np.float32)
    chroma = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    g8 = gray.astype(np.uint8)
    n = g8.size
    cdf = np.cumsum(np.bincount(g8.ravel(), minlength=256))
    ccdf = np.cumsum(np.bincount(chroma.ravel(), minlength=256))
    hist = np.diff(cdf, prepend=0) / n
    nz = hist[hist > 0]
    lap = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    std = float(gray.std())
    return {
        "brightness_mean": float(gray.mean()),
        "p05": float(np.searchsorted(cdf, 0.05 * n)),
        "p99": float(np.searchsorted(cdf, 0.99 * n)),
        "chroma_p99": float(np.searchsorted(ccdf, 0.99 * n)),
        "std": std,
        "sharpness": float(lap.std()) / (std + 1e-6),
        "entropy": float(-(nz * np.log2(nz)).sum()),
        "width": a.shape[1],
        "height": a.shape[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=None, help="default: os.cpu_count()")
    ap.add_argument("--blur-only", action="store_true", help="skip the speed measurement")
    args = ap.parse_args()

    import warnings

    from imgaudit.config import AuditConfig
    from imgaudit.decode import run_decode_pass
    from imgaudit.imageset import load_images

    t0 = time.perf_counter()
    paths = build(args.n)
    sizes = [Image.open(p).size for p in paths[:200]]
    print(f"dataset: {len(paths)} JPEGs under {OUT} (built/checked in {time.perf_counter() - t0:.1f}s); "
          f"median size of the first 200: {int(np.median([s[0] for s in sizes]))}x{int(np.median([s[1] for s in sizes]))}, "
          f"{sum(p.stat().st_size for p in paths) / len(paths) / 1024:.0f} KiB/file")  # fmt: skip
    if args.blur_only:
        blur_sensitivity(paths[1::10][:200])
        return
    for p in paths:  # warm the page cache so both contenders read from memory
        p.read_bytes()
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    print(f"cpu cores: {os.cpu_count()}, workers for imgaudit: {workers}")

    t0 = time.perf_counter()
    for p in paths:
        baseline_stats(p)
    base_s = time.perf_counter() - t0
    base_ips = len(paths) / base_s
    print(f"baseline  Image.open().convert('RGB') + numpy stats, 1 image at a time: {base_s:7.2f} s  {base_ips:7.1f} img/s")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ims = load_images(OUT)
    assert len(ims) == len(paths)
    results = {}
    full_kinds = AuditConfig().hash_kinds
    # one-time imports (numba's compiled kernels, scipy's DCT) outside the timings,
    # as the baseline's numpy/PIL imports are
    warm = OUT.parent / "properties_warmup"
    warm.mkdir(exist_ok=True)
    for p in paths[:8]:
        (warm / p.name).write_bytes(p.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_decode_pass(load_images(warm), AuditConfig(cache_dir=False, progress=False), None)
    for label, kinds in (("properties only (no hashes)", ()), (f"full pass (hashes {'+'.join(full_kinds)})", full_kinds)):
        cfg = AuditConfig(num_workers=workers, cache_dir=False, progress=False, hash_kinds=kinds)
        t0 = time.perf_counter()
        out = run_decode_pass(ims, cfg, None)
        s = time.perf_counter() - t0
        if not out.records["ok"].all():
            raise SystemExit(f"unexpected unreadable images: {out.records.loc[~out.records['ok'], 'error'].head()}")
        results[label] = len(paths) / s
        print(f"imgaudit  {label:<40s}: {s:7.2f} s  {len(paths) / s:7.1f} img/s  "
              f"ratio vs baseline: {len(paths) / s / base_ips:.2f}x")  # fmt: skip
    print(f"RATIO (properties pass / baseline): {results['properties only (no hashes)'] / base_ips:.2f}x  (target >= 3x)")
    blur_sensitivity(paths[1::10][:200])


def blur_sensitivity(paths: list[Path], share: float = 0.1, draws: int = 5) -> None:
    """How the ``blurry`` check responds to full-size Gaussian blur of real photos."""
    from types import SimpleNamespace

    from PIL import ImageFilter

    from imgaudit.checks.properties import Blurry
    from imgaudit.columns import issue_col
    from imgaudit.config import AuditConfig
    from imgaudit.decode import STAT_SIDE, run_decode_pass
    from imgaudit.imageset import load_images

    out_dir = OUT.parent / "properties_blur"
    sigmas = (0, 4, 8, 12)
    for sigma in sigmas:
        d = out_dir / f"sigma{sigma:02d}"
        d.mkdir(parents=True, exist_ok=True)
        for p in paths:
            q = d / p.name
            if not q.exists():
                im = Image.open(p).convert("RGB")
                (im.filter(ImageFilter.GaussianBlur(sigma)) if sigma else im).save(q, format="JPEG", quality=90)
    rec = run_decode_pass(load_images(out_dir), AuditConfig(cache_dir=False, progress=False, hash_kinds=()), None).records
    names = [p.name for p in paths]
    by_sigma = {sg: rec.loc[[f"sigma{sg:02d}/{n}" for n in names]] for sg in sigmas}
    old = 0.35  # the former absolute threshold, for comparison
    params = Blurry.Params()
    print(f"blur sensitivity ({len(paths)} photos, sharpness at a {STAT_SIDE} px short side): full-size Gaussian blur sigma")
    print(f"  former rule (absolute threshold {old}): share of each blurred set flagged")
    for sg in sigmas:
        r = by_sigma[sg]
        flagged = (r["sharpness"] < old) & (r["gray_std"] >= params.min_contrast)
        print(f"    sigma {sg:2d} px: median sharpness {r['sharpness'].median():.3f}, flagged {flagged.mean():.2f}")

    def run_check(r: pd.DataFrame) -> np.ndarray:
        r = r.copy()
        r.index = pd.Index([f"img_{i:04d}" for i in range(len(r))], name="path")
        ctx = SimpleNamespace(records=r, paths=r.index, labels=None)
        return Blurry().run(ctx)[issue_col("blurry")].to_numpy()  # type: ignore[arg-type]

    print(f"  default rule (floor {params.threshold}; or {params.z} robust SD and {params.max_ratio}x below "
          f"the peers' median): {share:.0%} of the sharp photos replaced by blurred copies, {draws} draws")  # fmt: skip
    rng = np.random.default_rng(0)
    sharp = by_sigma[0]
    f0 = run_check(sharp)
    print(f"    sigma  0 px (no blur): sharp photos flagged {f0.mean():.3f}")
    for sg in sigmas[1:]:
        hit, fa = [], []
        for _ in range(draws):
            pick = rng.choice(len(names), int(round(share * len(names))), replace=False)
            mixed = sharp.copy()
            mixed.iloc[pick] = by_sigma[sg].iloc[pick].to_numpy()
            f = run_check(mixed)
            m = np.zeros(len(names), dtype=bool)
            m[pick] = True
            hit.append(f[m].mean())
            fa.append(f[~m].mean())
        print(f"    sigma {sg:2d} px: blurred copies flagged {np.mean(hit):.2f}, sharp photos flagged {np.mean(fa):.3f}")
    print("  default rule on datasets blurred throughout (no sharp peers: the floor decides)")
    for sg in sigmas[1:]:
        print(f"    sigma {sg:2d} px: flagged {run_check(by_sigma[sg]).mean():.2f}")


if __name__ == "__main__":
    main()
