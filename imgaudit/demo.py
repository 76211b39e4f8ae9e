"""A small demo dataset built from real images that need no download.

scikit-learn ships 1,797 8x8 handwritten digits. We upscale a stratified subset to
PNG class folders in a fastai-style split layout (``train/<digit>``, ``valid/<digit>``)
and plant a few problems whose truth we know, so an audit has something to find.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

PLANTED_FILE = "PLANTED.json"


def _digit_image(pixels: np.ndarray, size: int) -> Image.Image:
    # sklearn digits are 0..16 ink intensities; draw dark ink on white paper like a scan
    arr = (255 - pixels.reshape(8, 8) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    # smooth to half size, then pixel-double: a straight bicubic 8x upscale is so soft
    # that every image would rightly be flagged blurry
    half = Image.fromarray(arr).resize((size // 2, size // 2), Image.Resampling.BICUBIC)
    return half.resize((size, size), Image.Resampling.NEAREST).convert("RGB")


def make_demo_dataset(
    out_dir: str | Path,
    n_per_class: int = 40,
    size: int = 64,
    valid_fraction: float = 0.2,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the demo dataset and return its root.

    Planted problems (listed in ``PLANTED.json`` next to the images):
    label flips (a digit filed under another class), an exact duplicate, a validation
    image that is a resized copy of a training image (a leak), a corrupt file, a tiny
    image, a sideways (rotated 90 degrees) image and a blurred image.

    Example
    -------
    >>> from imgaudit.demo import make_demo_dataset
    >>> root = make_demo_dataset("demo_data")                      # doctest: +SKIP
    >>> imgaudit.audit(root, size=64)                              # doctest: +SKIP
    """
    from sklearn.datasets import load_digits

    root = Path(out_dir)
    if root.exists():
        if not overwrite and any(root.iterdir()):
            if (root / PLANTED_FILE).is_file():
                return root
            raise FileExistsError(f"{root} exists and is not an imgaudit demo dataset")
        if overwrite and (root / PLANTED_FILE).is_file():
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    digits = load_digits()
    images, targets = digits.images, digits.target
    written: list[tuple[str, int, str]] = []  # (path, true label, split)
    for cls in range(10):
        idx = rng.permutation(np.flatnonzero(targets == cls))[:n_per_class]
        n_valid = max(1, int(round(len(idx) * valid_fraction)))
        for k, i in enumerate(idx):
            split = "valid" if k < n_valid else "train"
            rel = f"{split}/{cls}/digit_{i:04d}.png"
            (root / split / str(cls)).mkdir(parents=True, exist_ok=True)
            _digit_image(images[i], size).save(root / rel)
            written.append((rel, cls, split))

    planted: dict[str, list] = {"label_flips": [], "exact_duplicates": [], "leaks": [],
                                "corrupt": [], "tiny": [], "rotated": [], "blurry": []}
    train = [w for w in written if w[2] == "train"]
    order = rng.permutation(len(train))
    picks = [train[i] for i in order]

    # label flips: move a file into another class folder (same split)
    for rel, cls, split in picks[:4]:
        wrong = int((cls + 1 + rng.integers(0, 9)) % 10)
        new = f"{split}/{wrong}/{Path(rel).name}"
        (root / rel).rename(root / new)
        planted["label_flips"].append({"path": new, "true": str(cls), "given": str(wrong)})
    # exact duplicate, same class, new name
    rel, cls, split = picks[4]
    dup = f"{split}/{cls}/copy_of_{Path(rel).name}"
    shutil.copyfile(root / rel, root / dup)
    planted["exact_duplicates"].append([rel, dup])
    # leak: a validation image that is a resized copy of a training image
    rel, cls, split = picks[5]
    leak = f"valid/{cls}/resized_{Path(rel).stem}.png"
    Image.open(root / rel).resize((size * 3 // 2, size * 3 // 2), Image.Resampling.LANCZOS).save(root / leak)
    planted["leaks"].append([rel, leak])
    # a corrupt file: a PNG cut short
    rel, cls, split = picks[6]
    bad = f"{split}/{cls}/corrupt_{Path(rel).name}"
    data = (root / rel).read_bytes()
    (root / bad).write_bytes(data[: len(data) // 3])
    planted["corrupt"].append(bad)
    # a tiny image
    rel, cls, split = picks[7]
    tiny = f"{split}/{cls}/tiny_{Path(rel).name}"
    Image.open(root / rel).resize((8, 8), Image.Resampling.BOX).save(root / tiny)
    planted["tiny"].append(tiny)
    # a sideways image (replaces the original file)
    rel, cls, split = picks[8]
    img = Image.open(root / rel)
    img.transpose(Image.Transpose.ROTATE_90).save(root / rel)
    planted["rotated"].append({"path": rel, "degrees": 90})

    # a blurry image (replaces the original file)
    rel, cls, split = picks[9]
    Image.open(root / rel).filter(ImageFilter.GaussianBlur(3)).save(root / rel)
    planted["blurry"].append(rel)

    (root / PLANTED_FILE).write_text(json.dumps(planted, indent=1))
    return root


def main(argv: list[str] | None = None) -> int:
    """``python -m imgaudit.demo OUT_DIR``: write the demo dataset, print its root."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m imgaudit.demo", description=main.__doc__)
    parser.add_argument("out_dir", help="folder to write the demo dataset into")
    parser.add_argument("--n-per-class", type=int, default=40)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    root = make_demo_dataset(args.out_dir, n_per_class=args.n_per_class, overwrite=args.overwrite)
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
