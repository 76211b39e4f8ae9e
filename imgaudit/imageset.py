"""Sources (folders, CSV files, DataFrames) into one validated image table.

:func:`load_images` accepts what fastai users have:

(a) a folder per class, ``root/<class>/**/*`` (the class is the first folder under
    the root, as torchvision's ``ImageFolder``);
(b) the split layout ``root/train/<class>``, ``root/valid/<class>`` (``val`` and
    ``validation`` mean ``valid``; ``test`` is audited too: leaks into it matter);
(c) a CSV file or DataFrame shaped as fastai's ``ImageDataLoaders.from_csv`` /
    ``from_df`` read it: file names in the first column, labels in the second
    (``fn_col``/``label_col`` choose others), an optional ``is_valid`` column or a
    ``split`` column. A folder ``source`` with ``labels=`` a CSV/DataFrame uses the
    folder as the root of the CSV's paths;
(d) an unlabeled folder: images directly in the root, or nested under a single
    folder (no class structure) get ``label=None``.

Bad input never raises a traceback mid-way. A row whose file cannot even be opened
(missing file, broken symlink, symlink loop, a path escaping the root, a name with a
non-image extension) stays in the table with a ``problem`` reason: the decode pass
turns it into an ``unreadable`` issue. Duplicated rows (first kept), empty class
folders and files skipped by a folder scan (non-image extensions, hidden files,
directory symlinks, which are never followed) are listed in ``ImageSet.info`` and
announced with ``warnings.warn``. Only when nothing usable remains does loading
raise one ``ValueError`` that lists the problems.

The index is the POSIX path relative to the root, a ``str``. File names that are not
valid UTF-8 survive as ``surrogateescape`` strings (what ``os.listdir`` returns);
:meth:`ImageSet.abspath` finds the file again.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .imaging import IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

#: folder names of the split layout -> split value in the table
SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
}
_TRUE = {"1", "true", "t", "yes", "y", "valid", "val"}
_FALSE = {"0", "false", "f", "no", "n", "train", ""}
#: at most this many entries are listed per kind in ``info`` (counts are exact)
_INFO_LIST_MAX = 200


@dataclass
class ImageSet:
    """The validated image table every later stage reads.

    Attributes
    ----------
    root
        The folder the index paths are relative to.
    table
        DataFrame indexed by ``path`` (POSIX, relative to ``root``, str) with
        columns ``label`` (str or None), ``split`` ("train"/"valid"/"test" or None)
        and ``problem`` (None, or why the file cannot even be opened).
    info
        JSON-serialisable notes on the loading: source kind, layout, skipped files,
        duplicated rows, empty classes, problem counts.
    """

    root: Path
    table: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> pd.Index:
        return self.table.index

    @property
    def has_labels(self) -> bool:
        return bool(self.table["label"].notna().any())

    @property
    def has_splits(self) -> bool:
        return bool(self.table["split"].notna().any())

    @property
    def classes(self) -> list[str]:
        return sorted({str(v) for v in self.table["label"] if v is not None and v == v})

    def abspath(self, path: str) -> Path:
        """Absolute path of an index entry (works for non-UTF-8 names)."""
        return self.root / path

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return (
            f"ImageSet(root={str(self.root)!r}, images={len(self)}, classes={len(self.classes)}, "
            f"splits={self.has_splits}, problems={int(self.table['problem'].notna().sum())})"
        )


# -- helpers ---------------------------------------------------------------------------


def _stat_problem(path: str) -> str | None:
    """Why ``path`` cannot be opened as a file, or None if it can."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symlink" if os.path.islink(path) else "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop"
        return f"cannot access file: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


def _build(
    root: Path,
    rows: list[tuple[str, str | None, str | None, str | None]],
    info: dict[str, Any],
) -> ImageSet:
    """Rows ``(path, label, split, problem)`` -> ImageSet; one ValueError if none usable."""
    if not rows:
        raise ValueError(f"no images found in {str(root)!r} ({_skipped_summary(info)})")
    paths = [r[0] for r in rows]
    table = pd.DataFrame(
        {
            "label": pd.Series([r[1] for r in rows], dtype=object),
            "split": pd.Series([r[2] for r in rows], dtype=object),
            "problem": pd.Series([r[3] for r in rows], dtype=object),
        }
    )
    table.index = pd.Index(paths, dtype=object, name="path")
    problems = Counter(r[3] for r in rows if r[3] is not None)
    info["num_images"] = len(rows)
    info["num_problems"] = int(sum(problems.values()))
    info["problems"] = dict(problems.most_common())
    if problems and sum(problems.values()) == len(rows):
        listed = "; ".join(f"{p!r}: {r}" for p, _, _, r in rows[:10])
        more = f" (and {len(rows) - 10} more)" if len(rows) > 10 else ""
        raise ValueError(f"none of the {len(rows)} listed images can be opened: {listed}{more}")
    if problems:
        detail = ", ".join(f"{n} {reason}" for reason, n in problems.most_common())
        warnings.warn(
            f"{sum(problems.values())} image(s) cannot be opened ({detail}); they are reported "
            "as unreadable",
            stacklevel=3,
        )
    return ImageSet(root=root, table=table, info=info)


def _skipped_summary(info: dict[str, Any]) -> str:
    n = info.get("num_skipped", 0)
    if not n:
        return "no files"
    reasons = Counter(s["reason"] for s in info.get("skipped", []))
    return f"{n} file(s) skipped: " + ", ".join(f"{k} ({v})" for k, v in reasons.items())


def _add_skipped(info: dict[str, Any], path: str, reason: str) -> None:
    info["num_skipped"] = info.get("num_skipped", 0) + 1
    lst = info.setdefault("skipped", [])
    if len(lst) < _INFO_LIST_MAX:
        lst.append({"path": path, "reason": reason})


# -- folder scan -----------------------------------------------------------------------


def _scan(root: Path, info: dict[str, Any]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Walk ``root``: ``([(relpath, problem)], [relative dirs])``, sorted.

    Directory symlinks are never followed (they are listed as skipped): a scan
    can therefore neither loop nor leave the root. File symlinks are kept, with a
    problem when they dangle or loop.
    """
    files: list[tuple[str, str | None]] = []
    dirs: list[str] = []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        here = os.path.join(root, rel_dir) if rel_dir else os.fspath(root)
        try:
            entries = sorted(os.scandir(here), key=lambda e: e.name)
        except OSError as exc:
            _add_skipped(info, rel_dir, f"cannot list folder: {exc.strerror or exc}")
            continue
        for entry in entries:
            name = entry.name
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name.startswith("."):
                # .DS_Store, ._AppleDouble files, .ipynb_checkpoints, .git ...
                _add_skipped(info, rel, "hidden")
                continue
            is_link = entry.is_symlink()
            try:
                is_dir = entry.is_dir()
            except OSError:  # symlink loop: not a directory we can enter
                is_dir = False
            if is_dir:
                if is_link:
                    _add_skipped(info, rel, "directory symlink not followed")
                else:
                    stack.append(rel)
                    dirs.append(rel)
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext not in IMAGE_EXTENSIONS:
                reason = "not an image extension"
                if is_link:
                    reason = _stat_problem(entry.path) or reason
                _add_skipped(info, rel, reason)
                continue
            files.append((rel, _stat_problem(entry.path) if is_link else None))
    files.sort()
    dirs.sort()
    return files, dirs


def _from_folder(root: Path) -> ImageSet:
    info: dict[str, Any] = {"source": "folder", "root": str(root)}
    files, dirs = _scan(root, info)
    top_dirs = sorted(d for d in dirs if "/" not in d)
    split_dirs = {d: SPLIT_NAMES[d.lower()] for d in top_dirs if d.lower() in SPLIT_NAMES}
    rows: list[tuple[str, str | None, str | None, str | None]] = []
    empty: list[str] = []
    if split_dirs:
        info["layout"] = "split_folders"
        info["split_folders"] = dict(split_dirs)
        for rel, problem in files:
            parts = rel.split("/")
            split = split_dirs.get(parts[0])
            if split is None:
                _add_skipped(info, rel, "outside the split folders")
                continue
            label = parts[1] if len(parts) >= 3 else None
            rows.append((rel, label, split, problem))
        used = {r[0].split("/")[0] + "/" + r[0].split("/")[1] for r in rows if r[1] is not None}
        for d in dirs:
            parts = d.split("/")
            if len(parts) == 2 and parts[0] in split_dirs and d not in used:
                empty.append(d)
        for d in split_dirs:
            if not any(r[0].startswith(d + "/") for r in rows):
                empty.append(d)
    else:
        with_images = sorted({rel.split("/")[0] for rel, _ in files if "/" in rel})
        if len(with_images) >= 2:
            info["layout"] = "class_folders"
            for rel, problem in files:
                parts = rel.split("/")
                rows.append((rel, parts[0] if len(parts) >= 2 else None, None, problem))
            empty = [d for d in top_dirs if d not in with_images]
            loose = sum(1 for rel, _ in files if "/" not in rel)
            if loose:
                info["images_outside_class_folders"] = loose
                warnings.warn(
                    f"{loose} image(s) sit directly in {str(root)!r}, outside any class "
                    "folder: they are loaded without a label",
                    stacklevel=3,
                )
        else:
            # images directly in the root, or under one folder: no class structure
            info["layout"] = "unlabeled"
            rows = [(rel, None, None, problem) for rel, problem in files]
    if empty:
        info["empty_classes"] = sorted(empty)
        warnings.warn(
            f"empty class/split folder(s) without images: {sorted(empty)[:10]}", stacklevel=3
        )
    symlinked = [s["path"] for s in info.get("skipped", []) if s["reason"] == "directory symlink not followed"]
    if symlinked:
        warnings.warn(
            f"directory symlinks are not followed (images inside them are not loaded): "
            f"{symlinked[:5]}; pass a labels CSV to include them",
            stacklevel=3,
        )
    # files next to the data (labels.csv, README.md at the root) are expected;
    # non-images inside the image folders are worth a warning
    other = [
        s for s in info.get("skipped", [])
        if s["reason"] not in ("hidden", "directory symlink not followed") and "/" in s["path"]
    ]  # fmt: skip
    if other:
        warnings.warn(
            f"skipped {len(other)} file(s) that are not images (see ImageSet.info['skipped']): "
            f"{[s['path'] for s in other[:5]]}",
            stacklevel=3,
        )
    return _build(root, rows, info)


# -- tables (CSV / DataFrame) -------------------------------------------------------------


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # dtype=str, no NA parsing: a class named "NA" or "None" stays a class
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the CSV {str(path)!r}: {exc}") from exc


def _column(df: pd.DataFrame, col: int | str | None, what: str) -> str | None:
    if col is None:
        return None
    if isinstance(col, int):
        if col >= len(df.columns):
            return None
        return str(df.columns[col])
    if col not in df.columns:
        raise ValueError(f"{what} column {col!r} not in the table; columns are {list(df.columns)}")
    return col


def _normalise(name: str, root: Path) -> tuple[str, str | None]:
    """A table's file name -> (index key, problem). Lexical: symlinks are not resolved."""
    if os.path.isabs(name):
        full = os.path.normpath(name)
        base = os.path.normpath(os.path.abspath(root))
        if full == base or not full.startswith(base.rstrip(os.sep) + os.sep):
            return Path(full).as_posix(), "path escapes the dataset root"
        name = os.path.relpath(full, base)
    rel = posixpath.normpath(Path(name).as_posix())
    if rel == ".." or rel.startswith("../"):
        return rel, "path escapes the dataset root"
    if rel in (".", ""):
        return rel, "not a file"
    return rel, None


def _truthy(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    return None


def _from_table(
    df: pd.DataFrame,
    root: Path,
    kind: str,
    fn_col: int | str,
    label_col: int | str | None,
    valid_col: str | None,
    split_col: str | None,
    folder: str | None,
    suff: str,
) -> ImageSet:
    if len(df.columns) == 0 or len(df) == 0:
        raise ValueError(f"the label table ({kind}) is empty")
    if not root.is_dir():
        raise ValueError(f"image root {str(root)!r} is not a folder")
    fcol = _column(df, fn_col, "file name")
    if fcol is None:
        raise ValueError(f"file name column {fn_col!r} out of range; columns are {list(df.columns)}")
    special = {c for c in (valid_col, split_col) if c}
    lcol = _column(df, label_col, "label")
    if lcol is not None and (lcol in special or lcol == fcol):
        lcol = None  # e.g. "fname,is_valid": no labels
    vcol = valid_col if valid_col and valid_col in df.columns else None
    scol = split_col if split_col and split_col in df.columns else None
    info: dict[str, Any] = {
        "source": kind,
        "root": str(root),
        "layout": "table",
        "columns": {"file": fcol, "label": lcol, "is_valid": vcol, "split": scol},
    }
    names = df[fcol].tolist()
    labels = df[lcol].tolist() if lcol else [None] * len(df)
    if scol:
        raw_splits = df[scol].tolist()
        splits = [SPLIT_NAMES.get(str(s).strip().lower()) for s in raw_splits]
        unknown = sorted({str(s) for s, v in zip(raw_splits, splits, strict=True) if v is None and str(s).strip()})
        if unknown:
            info["unknown_split_values"] = unknown
            warnings.warn(f"unknown split value(s) {unknown[:10]}: those rows get split=None", stacklevel=3)
    elif vcol:
        flags = [_truthy(v) for v in df[vcol].tolist()]
        splits = [None if f is None else ("valid" if f else "train") for f in flags]
    else:
        splits = [None] * len(df)

    rows: list[tuple[str, str | None, str | None, str | None]] = []
    first_row: dict[str, int] = {}
    dup: dict[str, list[int]] = {}
    bad_names: list[int] = []
    for i, (name, label, split) in enumerate(zip(names, labels, splits, strict=True)):
        if name is None or (isinstance(name, float) and name != name) or str(name).strip() == "":
            bad_names.append(i)
            continue
        name = str(name)
        if folder:
            name = os.path.join(folder, name)
        name = name + suff
        key, problem = _normalise(name, root)
        if key in first_row:
            dup.setdefault(key, [first_row[key]]).append(i)
            continue
        first_row[key] = len(rows)
        if problem is None:
            ext = posixpath.splitext(key)[1].lower()
            # no extension: let the decoder sniff the content (common for hashed names)
            if ext and ext not in IMAGE_EXTENSIONS:
                problem = f"unknown image extension: {ext}"
            else:
                problem = _stat_problem(os.path.join(root, key))
        lab = None if label is None or (isinstance(label, float) and label != label) else str(label)
        rows.append((key, lab if lab else None, split, problem))
    if bad_names:
        info["rows_without_file_name"] = bad_names[:_INFO_LIST_MAX]
        warnings.warn(f"{len(bad_names)} row(s) without a file name were ignored: rows {bad_names[:10]}", stacklevel=3)
    if dup:
        # table rows are positions in the source table; labels show conflicting copies
        entries: list[dict[str, Any]] = []
        for key, idx in dup.items():
            labs = [None if labels[j] is None else str(labels[j]) for j in idx]
            entries.append({"path": key, "rows": idx, "labels": labs, "conflicting": len(set(labs)) > 1})
        info["num_duplicate_rows"] = sum(len(e["rows"]) - 1 for e in entries)
        info["duplicate_rows"] = entries[:_INFO_LIST_MAX]
        conflicting = sum(e["conflicting"] for e in entries)
        warnings.warn(
            f"{info['num_duplicate_rows']} duplicated row(s) in the label table (the first of each "
            f"was kept; {conflicting} with conflicting labels): {[e['path'] for e in entries[:5]]}",
            stacklevel=3,
        )
    return _build(root, rows, info)


def _is_dataloaders(obj: Any) -> bool:
    return hasattr(obj, "train_ds") and hasattr(obj, "valid_ds") and hasattr(obj, "vocab")


def load_images(
    source: str | os.PathLike[str] | pd.DataFrame | ImageSet,
    labels: str | os.PathLike[str] | pd.DataFrame | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    fn_col: int | str = 0,
    label_col: int | str | None = 1,
    valid_col: str | None = "is_valid",
    split_col: str | None = "split",
    folder: str | None = None,
    suff: str = "",
) -> ImageSet:
    """Load a dataset description into a validated :class:`ImageSet`.

    Parameters
    ----------
    source
        A folder (class folders, split folders or unlabeled images), a CSV file,
        a DataFrame, or an :class:`ImageSet` (returned as is).
    labels
        For a folder ``source``: a CSV path or DataFrame whose file names are
        relative to that folder (it replaces the folder-derived labels).
    root
        Folder the table's file names are relative to. Default: the CSV's folder;
        for a DataFrame, the common folder of absolute file names, else the
        current directory (as fastai's ``path='.'``).
    fn_col, label_col
        File-name and label columns (position or name), as in fastai's
        ``from_df``. ``label_col=None``: unlabeled.
    valid_col
        Boolean column marking validation rows (``is_valid``), used when present.
    split_col
        Column with ``train``/``valid``/``val``/``test`` values, used when present
        (wins over ``valid_col``).
    folder, suff
        Prefix folder and suffix added to every file name (fastai's ``folder`` and
        ``suff``).

    Returns
    -------
    ImageSet

    Raises
    ------
    ValueError
        When the source does not exist or is not understood, or when no usable
        image remains (the message lists the problems).

    Examples
    --------
    >>> ims = load_images("data/pets")                       # doctest: +SKIP
    >>> ims = load_images("data/labels.csv")                 # doctest: +SKIP
    >>> ims = load_images("data/images", labels=df)          # doctest: +SKIP
    >>> ims.table.head()                                     # doctest: +SKIP
    """
    if isinstance(source, ImageSet):
        return source
    table_opts = dict(
        fn_col=fn_col, label_col=label_col, valid_col=valid_col, split_col=split_col,
        folder=folder, suff=suff,
    )  # fmt: skip
    if isinstance(source, pd.DataFrame):
        if labels is not None:
            raise ValueError("labels= is for a folder source; a DataFrame source carries its own labels")
        base = Path(root) if root is not None else _default_root(source, fn_col)
        return _from_table(source, base, "dataframe", **table_opts)  # type: ignore[arg-type]
    if _is_dataloaders(source):
        raise ValueError(
            "fastai DataLoaders are not read directly: pass the folder or the DataFrame/CSV "
            "the DataLoaders were built from"
        )
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"unsupported source type {type(source).__name__}: pass a folder, a CSV or a DataFrame")
    path = Path(source)
    if not path.exists():
        raise ValueError(f"dataset path {str(path)!r} does not exist")
    if path.is_file():
        if labels is not None:
            raise ValueError("labels= is for a folder source; the CSV source carries its own labels")
        base = Path(root) if root is not None else path.parent
        return _from_table(_read_csv(path), base, "csv", **table_opts)  # type: ignore[arg-type]
    if root is not None and Path(root) != path:
        raise ValueError("root= is for CSV/DataFrame sources; a folder source is its own root")
    if labels is not None:
        if isinstance(labels, pd.DataFrame):
            return _from_table(labels, path, "dataframe", **table_opts)  # type: ignore[arg-type]
        lp = Path(labels)
        if not lp.is_file():
            raise ValueError(f"labels file {str(lp)!r} does not exist")
        return _from_table(_read_csv(lp), path, "csv", **table_opts)  # type: ignore[arg-type]
    return _from_folder(path)


def _default_root(df: pd.DataFrame, fn_col: int | str) -> Path:
    col = df.columns[fn_col] if isinstance(fn_col, int) and fn_col < len(df.columns) else fn_col
    if col in df.columns:
        names = [str(n) for n in df[col].tolist() if isinstance(n, str) and n]
        if names and all(os.path.isabs(n) for n in names):
            return Path(os.path.commonpath([os.path.dirname(n) for n in names]))
    return Path.cwd()
