from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import HOSTILE, NON_UTF8_NAME, PLANTED, jpeg_bytes, photo

from imgaudit.imageset import ImageSet, load_images


def _img(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(photo("coffee", seed, (32, 24))))
    return path


def _quiet_load(*args: object, **kw: object) -> tuple[ImageSet, list[str]]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ims = load_images(*args, **kw)  # type: ignore[arg-type]
    return ims, [str(x.message) for x in w]


def _check_table(ims: ImageSet) -> None:
    t = ims.table
    assert t.index.name == "path"
    assert t.index.is_unique
    assert list(t.columns) == ["label", "split", "problem"]
    for p, problem in t["problem"].items():
        assert isinstance(p, str)
        if problem is None:  # usable rows: POSIX, relative, normalised
            assert "\\" not in p and not p.startswith(("/", "../", "./")) and "//" not in p
    json.dumps(ims.info)  # JSON-serialisable


# -- folders -------------------------------------------------------------------------------


def test_class_folders(dataset_dir: Path, tree_checksum) -> None:
    before = tree_checksum(dataset_dir)
    ims, warns = _quiet_load(dataset_dir)
    _check_table(ims)
    assert ims.info["layout"] == "class_folders"
    assert ims.classes == ["cat", "cup"]
    assert ims.has_labels and not ims.has_splits
    assert ims.table.at["cat/img_00.jpg", "label"] == "cat"
    assert ims.table.at["cup/copy_of_cat_00.jpg", "label"] == "cup"
    planted = {p for paths in PLANTED.values() for p in paths}
    assert planted <= set(ims.table.index)
    assert ims.table["problem"].isna().all()
    assert warns == []
    assert ims.abspath("cat/img_00.jpg") == dataset_dir / "cat" / "img_00.jpg"
    assert tree_checksum(dataset_dir) == before


def test_split_layout_val_means_valid_and_empty_class_is_reported(tmp_path: Path) -> None:
    _img(tmp_path / "train/cat/a.jpg")
    _img(tmp_path / "train/dog/b.jpg")
    _img(tmp_path / "val/cat/c.jpg")
    (tmp_path / "val/dog").mkdir(parents=True)  # empty class folder
    _img(tmp_path / "test/dog/d.jpg")
    _img(tmp_path / "test/loose.jpg")  # in a split folder but no class folder
    _img(tmp_path / "elsewhere/x.jpg")  # outside the split folders
    (tmp_path / "train/cat/notes.txt").write_text("x")  # a non-image among the images
    ims, warns = _quiet_load(tmp_path)
    _check_table(ims)
    t = ims.table
    assert ims.info["layout"] == "split_folders"
    assert t.at["train/cat/a.jpg", "split"] == "train"
    assert t.at["val/cat/c.jpg", "split"] == "valid"
    assert t.at["test/dog/d.jpg", "split"] == "test" and t.at["test/dog/d.jpg", "label"] == "dog"
    assert t.at["test/loose.jpg", "label"] is None
    assert "elsewhere/x.jpg" not in t.index
    assert {"path": "elsewhere/x.jpg", "reason": "outside the split folders"} in ims.info["skipped"]
    assert ims.info["empty_classes"] == ["val/dog"]
    assert any("empty class" in w for w in warns)
    assert any("train/cat/notes.txt" in w for w in warns)
    assert ims.classes == ["cat", "dog"]


def test_unlabeled_flat_folder(tmp_path: Path) -> None:
    for i in range(3):
        _img(tmp_path / f"{i}.jpg", i)
    ims, _ = _quiet_load(tmp_path)
    assert ims.info["layout"] == "unlabeled"
    assert not ims.has_labels and ims.classes == []
    assert list(ims.table.index) == ["0.jpg", "1.jpg", "2.jpg"]


def test_nested_under_one_folder_is_unlabeled(tmp_path: Path) -> None:
    _img(tmp_path / "images/2021/a.jpg")
    _img(tmp_path / "images/2022/b.jpg")
    ims, _ = _quiet_load(tmp_path)
    assert ims.info["layout"] == "unlabeled"
    assert ims.table["label"].isna().all()
    assert "images/2021/a.jpg" in ims.table.index


def test_class_folders_with_nested_images_use_top_folder(tmp_path: Path) -> None:
    _img(tmp_path / "cat/batch1/a.jpg")
    _img(tmp_path / "dog/b.jpg")
    _img(tmp_path / "readme.jpg")
    ims, warns = _quiet_load(tmp_path)
    assert ims.table.at["cat/batch1/a.jpg", "label"] == "cat"
    assert ims.table.at["readme.jpg", "label"] is None
    assert any("outside any class folder" in w for w in warns)


def test_hostile_folder_rows_and_skips(hostile_dir: Path, tree_checksum) -> None:
    before = tree_checksum(hostile_dir)
    ims, warns = _quiet_load(hostile_dir)
    _check_table(ims)
    assert set(ims.table.index) == set(HOSTILE)
    t = ims.table
    assert t.at["loop.jpg", "problem"] == "symlink loop"
    assert t.at["broken_link.jpg", "problem"] == "broken symlink"
    # the other rows are opened later by the decode pass
    assert t.drop(["loop.jpg", "broken_link.jpg"])["problem"].isna().all()
    skipped = {s["path"]: s["reason"] for s in ims.info["skipped"]}
    assert skipped == {
        ".DS_Store": "hidden",
        "notes.txt": "not an image extension",
        "sub/up": "directory symlink not followed",
    }
    assert not any("notes.txt" in w for w in warns)  # a file next to the data: listed, not warned
    # non-UTF-8 names survive as surrogate-escaped str and map back to the file
    assert NON_UTF8_NAME in t.index
    assert os.path.isfile(ims.abspath(NON_UTF8_NAME))
    assert os.path.isfile(ims.abspath("ünïcödé 名前.jpg"))
    assert tree_checksum(hostile_dir) == before


# -- tables ---------------------------------------------------------------------------------


def test_csv_fname_label_is_valid(tmp_path: Path) -> None:
    _img(tmp_path / "imgs/a.jpg")
    _img(tmp_path / "imgs/b.jpg")
    csv = tmp_path / "labels.csv"
    csv.write_text("fname,label,is_valid\nimgs/a.jpg,cat,False\nimgs/b.jpg,dog,True\n")
    ims, warns = _quiet_load(csv)
    _check_table(ims)
    assert ims.root == tmp_path
    assert ims.info["source"] == "csv"
    assert ims.table.loc["imgs/a.jpg"].tolist() == ["cat", "train", None]
    assert ims.table.loc["imgs/b.jpg"].tolist() == ["dog", "valid", None]
    assert warns == []


def test_dataframe_split_column_named_columns_folder_and_suffix(tmp_path: Path) -> None:
    _img(tmp_path / "train_images/a.jpg")
    _img(tmp_path / "train_images/b.jpg")
    _img(tmp_path / "train_images/c.jpg")
    df = pd.DataFrame({"id": ["a", "b", "c"], "breed": ["x", "y", "NA"], "split": ["train", "val", "test"]})
    ims = load_images(df, root=tmp_path, fn_col="id", label_col="breed", folder="train_images", suff=".jpg")
    t = ims.table
    assert list(t.index) == ["train_images/a.jpg", "train_images/b.jpg", "train_images/c.jpg"]
    assert t["split"].tolist() == ["train", "valid", "test"]
    assert t["label"].tolist() == ["x", "y", "NA"]  # "NA" is a class name, not missing


def test_folder_with_labels_csv(dataset_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\ncat/img_00.jpg,tabby\ncup/img_00.jpg,mug\n")
    ims = load_images(dataset_dir, labels=labels)
    assert ims.root == dataset_dir
    assert ims.table["label"].to_dict() == {"cat/img_00.jpg": "tabby", "cup/img_00.jpg": "mug"}
    df = pd.read_csv(labels)
    assert load_images(dataset_dir, labels=df).table.equals(ims.table)


def test_single_column_table_is_unlabeled(tmp_path: Path) -> None:
    _img(tmp_path / "a.jpg")
    ims = load_images(pd.DataFrame({"fname": ["a.jpg"]}), root=tmp_path)
    assert not ims.has_labels


def test_dataframe_of_absolute_paths_defaults_root(tmp_path: Path) -> None:
    a, b = _img(tmp_path / "d/x/a.jpg"), _img(tmp_path / "d/y/b.jpg")
    ims = load_images(pd.DataFrame({"fname": [str(a), str(b)], "label": ["x", "y"]}))
    assert ims.root == tmp_path / "d"
    assert list(ims.table.index) == ["x/a.jpg", "y/b.jpg"]


def test_bad_rows_become_problems_not_tracebacks(tmp_path: Path, tree_checksum) -> None:
    root = tmp_path / "data"
    _img(root / "ok.jpg")
    _img(root / "ok2.jpg", 1)
    _img(root / "noext", 2)
    _img(tmp_path / "outside.jpg")
    (root / "notes.txt").write_text("hi")
    (root / "adir.jpg").mkdir()
    before = tree_checksum(tmp_path)
    df = pd.DataFrame(
        {
            "fname": [
                "ok.jpg", "missing.jpg", "../outside.jpg", str(tmp_path / "outside.jpg"),
                str(root / "ok2.jpg"), "notes.txt", "noext", "ok.jpg", "./ok.jpg", "", "adir.jpg",
            ],
            "label": ["a", "a", "a", "a", "b", "b", "b", "b", "a", "a", "a"],
        }
    )  # fmt: skip
    ims, warns = _quiet_load(df, root=root)
    _check_table(ims)
    p = ims.table["problem"].to_dict()
    assert p["ok.jpg"] is None
    assert p["missing.jpg"] == "file not found"
    assert p["../outside.jpg"] == "path escapes the dataset root"
    assert p[(tmp_path / "outside.jpg").as_posix()] == "path escapes the dataset root"
    assert p["ok2.jpg"] is None  # absolute path inside the root -> relative
    assert p["notes.txt"] == "unknown image extension: .txt"
    assert p["noext"] is None  # no extension: the decoder sniffs the content
    assert p["adir.jpg"] == "is a directory"
    # duplicates (also after normalisation) keep the first row, with conflicting labels noted
    assert ims.table.at["ok.jpg", "label"] == "a"
    assert ims.info["num_duplicate_rows"] == 2
    dup = ims.info["duplicate_rows"][0]
    assert dup == {"path": "ok.jpg", "rows": [0, 7, 8], "labels": ["a", "b", "a"], "conflicting": True}
    assert ims.info["rows_without_file_name"] == [9]
    joined = "\n".join(warns)
    assert "duplicated row" in joined and "without a file name" in joined and "cannot be opened" in joined
    assert ims.info["problems"]["path escapes the dataset root"] == 2
    assert tree_checksum(tmp_path) == before


def test_nothing_usable_raises_one_clear_error(tmp_path: Path) -> None:
    df = pd.DataFrame({"fname": ["a.jpg", "../b.jpg"], "label": ["x", "y"]})
    with pytest.raises(ValueError, match=r"none of the 2 listed images can be opened.*file not found.*escapes"):
        load_images(df, root=tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/readme.txt").write_text("x")
    with pytest.raises(ValueError, match="no images found.*not an image extension"):
        load_images(tmp_path / "empty")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "nope", "does not exist"),
        (lambda p: pd.DataFrame(), "empty"),
        (lambda p: 42, "unsupported source type"),
    ],
)
def test_bad_sources(tmp_path: Path, make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_images(make(tmp_path))


def test_unreadable_csv_is_a_clear_error(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"")
    with pytest.raises(ValueError, match="cannot read the CSV"):
        load_images(csv)


def test_missing_label_column_name_is_a_clear_error(tmp_path: Path) -> None:
    _img(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="label column 'cls' not in the table"):
        load_images(pd.DataFrame({"fname": ["a.jpg"]}), root=tmp_path, label_col="cls")


def test_copied_dataset_keeps_index(dataset_dir: Path, tmp_path: Path) -> None:
    dst = tmp_path / "copy"
    shutil.copytree(dataset_dir, dst)
    assert load_images(dst).table.equals(load_images(dataset_dir).table)
