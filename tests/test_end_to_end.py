"""The whole round trip on the demo dataset.

audit -> export to FiftyOne -> a simulated review (through the FiftyOne Python API, as the
App would save it) -> cleaned CSV -> ``ImageDataLoaders.from_csv`` -> one epoch of ``fit``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import uuid

os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(
    tempfile.gettempdir(), f"imgaudit-test-fiftyone-db-{os.getuid()}"
)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

pytestmark = pytest.mark.slow


def test_demo_audit_review_clean_train(tmp_path):
    import fiftyone as fo
    from fastai.vision.all import ImageDataLoaders, Resize, accuracy, resnet18, vision_learner
    from fiftyone import ViewField as F

    import imgaudit
    from imgaudit.demo import make_demo_dataset
    from imgaudit.result import AuditResult

    root = make_demo_dataset(tmp_path / "demo", n_per_class=20)
    planted = json.loads((root / "PLANTED.json").read_text())
    result = imgaudit.audit(root, size=64, progress=False, num_workers=0)
    # what `imgaudit review` / `imgaudit clean` see: the saved result
    result = AuditResult.load(result.save(tmp_path / "result"))

    name = f"imgaudit-test-e2e-{uuid.uuid4().hex[:8]}"
    try:
        ds = result.to_fiftyone(name=name)
        assert len(ds) == len(result.issues)
        assert set(ds.list_saved_views()) >= {"unreadable", "exact_duplicates"}

        # the reviewer: corrects the planted label flips, removes the tiny image
        flips = {f["path"]: f["true"] for f in planted["label_flips"]}
        for path, true in flips.items():
            s = ds.one(F("imgaudit_path") == path)
            s.ground_truth.label = true
            s.save()
        (tiny,) = planted["tiny"]
        s = ds.one(F("imgaudit_path") == tiny)
        s.tags = [*s.tags, "remove"]
        s.save()

        out = tmp_path / "clean" / "cleaned.csv"
        cleaned = result.clean_labels(out, dataset=name).set_index("fname")
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)

    changes = pd.read_csv(out.parent / "changes.csv").set_index("path")
    for path, true in flips.items():
        assert cleaned.loc[path, "label"] == true
        assert changes.loc[path, "action"] == "relabel"
    assert tiny not in cleaned.index and changes.loc[tiny, "reason"] == "reviewer: remove"
    for path in planted["corrupt"]:
        assert path not in cleaned.index
    for pair in planted["exact_duplicates"]:
        assert sum(p in cleaned.index for p in pair) == 1
    for _train, valid in planted["leaks"]:
        assert valid not in cleaned.index
    assert cleaned["is_valid"].any() and not cleaned["is_valid"].all()

    dls = ImageDataLoaders.from_csv(
        root,
        csv_fname=out,
        valid_col="is_valid",
        item_tfms=Resize(32),
        bs=32,
        num_workers=0,
        device="cpu",
    )
    assert len(dls.train_ds) + len(dls.valid_ds) == len(cleaned)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
    learn.fit(1)
    train_loss, valid_loss, acc = learn.recorder.values[-1]
    assert math.isfinite(train_loss) and math.isfinite(valid_loss) and 0.0 <= acc <= 1.0
