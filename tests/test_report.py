"""The HTML report: sections, galleries, self-containment, caps, thumbnail cache."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from imgaudit.cache import Cache
from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.export.report import thumb_namespace, write_report
from imgaudit.result import AuditResult

SECTIONS = ("overview", "classes", "resolution", "issues", "recommendations")


# -- helpers -----------------------------------------------------------------------------
class _Refs(HTMLParser):
    """Every src/href/srcset/action/poster value and every CSS ``url(...)``."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.ids: set[str] = set()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if d.get("id"):
            self.ids.add(str(d["id"]))
        for k in ("src", "href", "srcset", "action", "poster", "data", "xlink:href"):
            if d.get(k):
                self.refs.append(str(d[k]))
        if d.get("style"):
            self.refs += re.findall(r"url\(([^)]*)\)", str(d["style"]))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.refs += re.findall(r"url\(([^)]*)\)", data)
            self.refs += re.findall(r"@import\s+['\"]?([^'\";]+)", data)


def parse(text: str) -> _Refs:
    p = _Refs()
    p.feed(text)
    return p


def external_refs(text: str) -> list[str]:
    """References that would need the network (or any file besides the report)."""
    refs = parse(text).refs
    bad = []
    for r in refs:
        r = r.strip().strip("'\"")
        if r.startswith(("data:", "#")):
            continue
        bad.append(r)
    return bad


def _img(path: Path, size: tuple[int, int], color: tuple[int, int, int], text: str) -> None:
    img = Image.new("RGB", size, color)
    d = ImageDraw.Draw(img)
    d.rectangle([2, 2, size[0] // 3, size[1] // 2], fill=(255, 255, 255))
    d.text((4, 4), text, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


@pytest.fixture()
def fake_result(tmp_path: Path) -> AuditResult:
    """An AuditResult built by hand from the contract, over real tiny files.

    Covers the special galleries (unreadable reasons, duplicate groups with keep,
    label suggestions, rotation suggestions) whatever checks the registry has today.
    """
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows = []
    for c in ("cat", "dog"):
        for i in range(8):
            rel = f"{c}/{i}.png"
            _img(
                root / rel,
                (int(rng.integers(40, 160)), int(rng.integers(40, 160))),
                tuple(int(x) for x in rng.integers(0, 255, 3)),
                f"{c}{i}",
            )
            rows.append((rel, c))
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rows.append(("cat/broken.jpg", "cat"))
    idx = pd.Index([r for r, _ in rows], name="path")
    n = len(idx)
    df = pd.DataFrame(index=idx)
    df["label"] = [c for _, c in rows]
    df["split"] = ["valid" if i % 4 == 0 else "train" for i in range(n)]
    sizes = [Image.open(root / p).size if not p.endswith(".jpg") else (np.nan, np.nan) for p in idx]
    df["width"] = [s[0] for s in sizes]
    df["height"] = [s[1] for s in sizes]
    df["sha1"] = [hashlib.sha1((root / p).read_bytes()).hexdigest() for p in idx]

    def put(t: str, flag: np.ndarray, score: np.ndarray) -> None:
        df[issue_col(t)] = flag
        df[score_col(t)] = score

    bad = np.asarray(idx == "cat/broken.jpg")
    put("unreadable", bad, np.where(bad, 0.0, 1.0))
    df[extra_col("unreadable", "reason")] = np.where(
        bad, "truncated: image file is truncated", None
    )
    short = np.fmin(df["width"], df["height"]).fillna(224).to_numpy()
    put("low_resolution", short < 80, np.clip(short / 224, 0, 1))
    put("dark", np.zeros(n, bool), np.ones(n))
    group = np.full(n, -1)
    group[[0, 1, 9]] = 0
    group[[4, 12]] = 1
    keep = np.zeros(n, bool)
    keep[[0, 4]] = True
    put("near_duplicates", (group >= 0) & ~keep, np.where((group >= 0) & ~keep, 0.1, 1.0))
    df[extra_col("near_duplicates", "group")] = group
    df[extra_col("near_duplicates", "keep")] = keep
    # a near-duplicate finding without its own group column: shown with its group
    leak = np.zeros(n, bool)
    leak[8] = True
    group[8] = 1
    df[extra_col("near_duplicates", "group")] = group
    put("split_leak", leak, np.where(leak, 0.0, 1.0))
    lab = np.zeros(n, bool)
    lab[[2, 10]] = True
    put("label", lab, np.where(lab, 0.05, 0.9))
    df[extra_col("label", "suggested")] = np.where(
        lab, np.where(df["label"] == "cat", "dog", "cat"), df["label"]
    )
    df[extra_col("label", "confidence")] = np.where(lab, 0.97, 0.6)
    rot = np.zeros(n, bool)
    rot[[3, 11]] = True
    put("rotation", rot, np.where(rot, 0.02, 1.0))
    df[extra_col("rotation", "suggested")] = np.where(rot, 90, 0)
    views = {
        "rot90": {
            "verdict": "unsafe",
            "accuracy": 0.3,
            "accuracy_identity": 0.9,
            "retention": 0.1,
            "retention_low": 0.0,
            "retention_high": 0.2,
            "agreement": 0.3,
            "evidence": "accuracy fell to chance",
        },
        "flip_h": {
            "verdict": "safe",
            "accuracy": 0.89,
            "accuracy_identity": 0.9,
            "retention": 0.98,
            "retention_low": 0.9,
            "retention_high": 1.0,
            "agreement": 0.95,
            "evidence": "kept",
        },
    }
    info = {
        "imageset": {"num_images": n},
        "rotation": {
            "n_images": n - 1,
            "sensitive": True,
            "views": views,
            "per_class": {"cat": views, "dog": views},
            "pairs": {"rot90": [{"from": "cat", "to": "dog", "count": 3, "fraction": 0.4}]},
        },
        "blurry": {"skipped": "too few images for a threshold"},
    }
    rec = {
        "code": "dls = ImageDataLoaders.from_csv(path, 'cleaned.csv', item_tfms=Resize(224))",
        "reasons": ["rot90 changes the label: no dihedral augmentation"],
        "warnings": ["2 label issues: review them before training"],
    }
    return AuditResult(
        df,
        info=info,
        recommendations=rec,
        config={"size": 96, "thumbnail_size": 64, "cache_dir": str(tmp_path / "cache")},
        root=root,
        issue_types=[
            "unreadable",
            "low_resolution",
            "dark",
            "near_duplicates",
            "split_leak",
            "label",
            "rotation",
        ],
    )


# -- tests on the hand-made result ----------------------------------------------------------
def test_report_has_every_section_and_gallery(fake_result: AuditResult, tmp_path: Path) -> None:
    out = write_report(fake_result, tmp_path / "r.html")
    text = out.read_text(encoding="utf-8")
    p = parse(text)
    for s in (*SECTIONS, "rotation-verdict"):
        assert s in p.ids, s
    for t in fake_result.issue_types:
        assert f"issue-{t}" in p.ids, t
    # counts complete in the overview cards
    for t, nflag in zip(
        fake_result.summary["issue_type"], fake_result.summary["num_issues"], strict=True
    ):
        assert re.search(rf'href="#issue-{t}"><div class="n">{nflag:,}</div>', text), t
    # unreadable with its reason, no thumbnail needed
    assert "cat/broken.jpg" in text and "truncated: image file is truncated" in text
    # label: given -> suggested
    assert re.search(
        r"cat <span class=\"arrow\">&rarr;</span> <span class=\"sugg\">dog</span>", text
    )
    # duplicate groups side by side, keeper marked, split leak called out
    assert text.count('class="group"') == 3  # two near-duplicate groups, one split leak group
    leak_section = text.split('id="issue-split_leak"')[1].split('class="gal"')[0]
    assert 'class="group"' in leak_section and 'pill drop">split_leak<' in leak_section
    assert "dog/4.png" in leak_section  # the rest of the flagged image's group is shown
    assert text.count('pill keep">keep<') == 2
    assert "spans splits" in text
    # rotated images beside their uprighted view
    assert text.count("uprighted (90°)") == 2
    # the skipped check and the recommendation
    assert "too few images for a threshold" in text
    assert "ImageDataLoaders.from_csv" in text and "review them before training" in text
    # the warnings also head the page, before the first gallery
    assert (
        text.index("Fix first")
        < text.index("review them before training")
        < text.index('id="issues"')
    )
    # rotation verdict table
    assert "accuracy fell to chance" in text and "unsafe" in text
    # images are embedded
    imgs = [d["src"] for tag, d in p.tags if tag == "img"]
    assert imgs and all(str(s).startswith("data:image/") for s in imgs)


def test_report_references_nothing_external(fake_result: AuditResult, tmp_path: Path) -> None:
    text = write_report(fake_result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert external_refs(text) == []
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", text, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", text, re.I)
    assert "<script src" not in text and "<link" not in text


def test_external_ref_scanner_catches_urls() -> None:
    # the scanner used above must itself see every kind of external reference
    html = (
        '<html><head><style>@import "https://x.org/a.css"; body{background:url(http://x/y.png)}'
        '</style></head><body><img src="https://cdn.example/x.png"><a href="//evil/x">x</a>'
        '<div style="background:url(\'https://a/b\')"></div><img src="data:image/png;base64,AA"></body></html>'
    )
    bad = external_refs(html)
    assert len(bad) == 5, bad


def test_galleries_capped_counts_complete(fake_result: AuditResult, tmp_path: Path) -> None:
    text = write_report(fake_result, tmp_path / "r.html", max_per_gallery=1).read_text(
        encoding="utf-8"
    )
    n_low = int(fake_result.summary.set_index("issue_type").loc["low_resolution", "num_issues"])
    assert n_low > 1
    assert f"Showing the worst 1 of {n_low} images" in text
    assert f"low_resolution — {n_low} images" in text
    # worst first: the lowest score is the one shown
    low = fake_result.get_issues("low_resolution")
    worst = low.index[0]
    section = text.split('id="issue-low_resolution"')[1].split('class="gal"')[0]
    assert worst in section and low.index[1] not in section


def test_thumbnails_made_once_then_cached(fake_result: AuditResult, tmp_path: Path) -> None:
    write_report(fake_result, tmp_path / "a.html")
    cache = Cache(tmp_path / "cache")
    keys = cache.keys(thumb_namespace(64))
    cache.close()
    shown = fake_result.issues.index[fake_result.issues[issue_col("label")]]
    assert set(fake_result.issues.loc[shown, "sha1"]) <= keys
    # with the sources gone, the cached thumbnails still make the same report images
    for p in fake_result.issues.index:
        (Path(fake_result.root) / p).unlink()
    text = write_report(fake_result, tmp_path / "b.html").read_text(encoding="utf-8")
    first = (tmp_path / "a.html").read_text(encoding="utf-8")

    def srcs(t: str) -> list[str | None]:
        return [
            d["src"]
            for tag, d in parse(t).tags
            if tag == "img" and "resolution" not in str(d.get("alt"))
        ]

    assert srcs(text) == srcs(first)


def test_missing_thumbnail_says_why(fake_result: AuditResult, tmp_path: Path) -> None:
    (Path(fake_result.root) / "cat/2.png").write_bytes(b"")  # a label-issue image, now empty
    text = write_report(fake_result, tmp_path / "r.html", cache=False).read_text(encoding="utf-8")
    assert "zero-byte file" in text


def test_written_atomically(fake_result: AuditResult, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.html"
    out.parent.mkdir()
    out.write_text("old")
    write_report(fake_result, out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(x.name for x in out.parent.iterdir()) == ["r.html"]


def test_result_report_method(fake_result: AuditResult, tmp_path: Path) -> None:
    out = fake_result.report(tmp_path / "m.html", max_per_gallery=3)
    assert Path(out).is_file()


def test_unlabeled_no_rotation_no_recommendations(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for i in range(3):
        _img(root / f"{i}.png", (50, 40), (10 * i, 100, 200), str(i))
    idx = pd.Index([f"{i}.png" for i in range(3)], name="path")
    df = pd.DataFrame(
        {"label": [None] * 3, "split": [None] * 3, "width": [50] * 3, "height": [40] * 3}, index=idx
    )
    df[issue_col("low_resolution")] = True
    df[score_col("low_resolution")] = 0.2
    r = AuditResult(df, config={"size": 64, "cache_dir": False}, root=root)
    text = write_report(r, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "The dataset has no labels" in text
    assert "rotation-verdict" not in text
    assert "No recommendations in this result" in text
    assert text.count("<img") >= 3


# -- the demo dataset, through the real audit -------------------------------------------------
@pytest.fixture(scope="module")
def demo_result(tmp_path_factory: pytest.TempPathFactory) -> AuditResult:
    import os

    import imgaudit
    from imgaudit.demo import make_demo_dataset

    cache = tmp_path_factory.mktemp("demo-cache")
    old = os.environ.get("IMGAUDIT_CACHE_DIR")
    os.environ["IMGAUDIT_CACHE_DIR"] = str(cache)
    try:
        root = make_demo_dataset(tmp_path_factory.mktemp("demo") / "digits")
        result = imgaudit.audit(root, size=64, progress=False, cache_dir=str(cache))
    finally:
        if old is None:
            os.environ.pop("IMGAUDIT_CACHE_DIR", None)
        else:
            os.environ["IMGAUDIT_CACHE_DIR"] = old
    return result


@pytest.mark.slow
def test_demo_report_every_section_and_issue_type(demo_result: AuditResult, tmp_path: Path) -> None:
    out = write_report(demo_result, tmp_path / "demo.html")
    text = out.read_text(encoding="utf-8")
    p = parse(text)
    for s in SECTIONS:
        assert s in p.ids, s
    found = demo_result.summary[demo_result.summary["num_issues"] > 0]
    assert len(found) > 0
    for t, nflag in zip(found["issue_type"], found["num_issues"], strict=True):
        assert f"issue-{t}" in p.ids, t
        assert f"{t} — {nflag:,} image" in text, t
    if isinstance(demo_result.info.get("rotation"), dict):
        assert "rotation-verdict" in p.ids
    if demo_result.recommendations.get("code"):
        assert demo_result.recommendations["code"].splitlines()[0][:30] in text.replace(
            "&quot;", '"'
        ).replace("&#x27;", "'")
    assert external_refs(text) == []
    assert len(text) < 5_000_000


@pytest.mark.slow
def test_demo_report_reuses_decode_pass_thumbnails(
    demo_result: AuditResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="imgaudit.export.report"):
        write_report(demo_result, tmp_path / "demo.html")
    msg = [r.getMessage() for r in caplog.records if "thumbnails from cache" in r.getMessage()]
    assert msg, caplog.text
    m = re.search(r"(\d+) thumbnails from cache, (\d+) made", msg[-1])
    assert m is not None
    from_cache, made = int(m.group(1)), int(m.group(2))
    assert from_cache > 0
    # every readable shown image came from the decode pass's cache, none re-decoded
    assert made == 0


def test_many_classes_table_capped(tmp_path: Path) -> None:
    from imgaudit.export.report import MAX_CLASS_ROWS

    n_classes = MAX_CLASS_ROWS + 25
    labels = [f"c{i:03d}" for i in range(n_classes) for _ in range(1 + i % 3)]
    idx = pd.Index([f"{lab}/{k}.png" for k, lab in enumerate(labels)], name="path")
    df = pd.DataFrame({"label": labels, "split": None, "width": 64, "height": 64}, index=idx)
    df[issue_col("dark")] = False
    df[score_col("dark")] = 1.0
    r = AuditResult(df, config={"size": 64, "cache_dir": False}, root=tmp_path)
    text = write_report(r, tmp_path / "r.html").read_text(encoding="utf-8")
    section = text.split('id="classes"')[1].split("</section>")[0]
    assert f"{n_classes} classes" in section
    assert "25 classes in between" in section
    assert section.count('class="barcell"') == MAX_CLASS_ROWS
