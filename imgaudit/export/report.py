"""The self-contained HTML report of an :class:`~imgaudit.result.AuditResult`.

One file that opens offline: no CDN, no web fonts, no external URL. Images are
embedded as ``data:`` URIs. The report is written against the result contract
only (``issues``/``summary``/``info``/``recommendations``/``config``/``root``), so
every check's findings show up as soon as the check lands:

- overview cards: images, classes, flagged images, one card per issue type;
- class distribution (per split where the dataset has splits);
- resolution plots against the target size;
- one gallery per issue type, worst first: label issues with given -> suggested
  label, duplicate groups side by side, rotated images beside their uprighted
  view, unreadable files with their reason;
- the rotation verdict table and the recommended fastai code.

Galleries are capped (``max_per_gallery``) while every count stays complete, so a
50,000-image dataset still gives a small report that opens quickly. Thumbnails
come from the audit cache (namespace ``thumb-<size>``, keyed by the file's sha1);
missing ones are made from the source file once (:func:`imgaudit.decode.make_thumbnail`)
and cached, so only the images a report shows ever get one.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import logging
import math
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import __version__
from .._io import atomic_write
from ..columns import extra_col, issue_col, score_col
from ..decode import make_thumbnail, thumb_namespace

if TYPE_CHECKING:
    from PIL import Image

    from ..cache import Cache
    from ..result import AuditResult

logger = logging.getLogger(__name__)


#: what each known issue type means, shown above its gallery
DESCRIPTIONS: dict[str, str] = {
    "unreadable": "Files that could not be decoded (corrupt, truncated, empty, not an image, "
    "decompression bomb). Training would crash on them or silently skip them.",
    "low_resolution": "Short side below the training size: these images get upsampled.",
    "odd_aspect_ratio": "A square centre crop would cut away a large share of the image.",
    "odd_size": "Image area far outside the dataset's own distribution.",
    "grayscale": "Grayscale pixels (also RGB files whose three channels are equal).",
    "dark": "Very dark images.",
    "light": "Very bright / washed-out images.",
    "blurry": "Little high-frequency detail: likely out of focus or heavily upsampled.",
    "low_information": "Nearly uniform images with little content (blank, solid colour).",
    "exact_duplicates": "Byte- or pixel-identical copies. Copies across splits leak the "
    "validation set into training.",
    "near_duplicates": "Visually near-identical images (resized, re-encoded, flipped or rotated "
    "copies). Groups that span splits leak the validation set.",
    "label": "The out-of-fold model disagrees confidently with the given label.",
    "label_conflict": "Near-duplicate groups whose images carry different labels: at least one "
    "label is wrong.",
    "split_leak": "Validation/test images that duplicate a training image: validation scores "
    "are inflated by what the model has already seen.",
    "outlier": "Far from every other image in embedding space: possibly not a member of any "
    "class (wrong data, corrupt content, a stray file).",
    "rotation": "The image looks rotated: the model is far more confident in another "
    "orientation. Shown beside the view that would upright it.",
}

#: extras that are shown as captions (besides the label/size/score every tile shows)
_CAPTION_EXTRAS = ("reason", "error", "group", "suggested", "confidence")

_CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2433;--muted:#667085;--line:#e4e7ec;--acc:#2f6fed;
--warn:#d97706;--bad:#d92d20;--ok:#12b76a;--code:#0f172a}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:var(--ink);background:var(--bg)}
header{background:var(--code);color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px;font-weight:650}
header .meta{color:#b6c2d9;font-size:13px;margin-top:4px;word-break:break-all}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);
padding:8px 28px;display:flex;flex-wrap:wrap;gap:6px 14px;font-size:13px}
nav a{color:var(--acc);text-decoration:none}
nav a.zero{color:var(--muted)}
main{padding:8px 28px 40px;max-width:1400px}
.row2{display:grid;grid-template-columns:minmax(340px,auto) minmax(0,1fr);gap:0 28px;align-items:start}
@media (max-width:1000px){.row2{grid-template-columns:1fr}}
td.barcell{width:160px}
.gals{display:flex;flex-wrap:wrap;gap:0 32px;align-items:flex-start}
.gal{flex:1 1 100%;min-width:0}
.gal[data-small]{flex:0 1 auto}
.gal[data-small] .desc{max-width:360px}
section{margin:22px 0}
h2{font-size:18px;margin:0 0 10px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:15px;margin:18px 0 4px}
.desc{color:var(--muted);margin:0 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px;
text-decoration:none;color:inherit;display:block}
.card .n{font-size:24px;font-weight:700}
.card .l{color:var(--muted);font-size:12px}
.card.big{border-top:4px solid var(--acc)}
.card.hit{border-top:4px solid var(--warn)}
.card.hit .n{color:var(--warn)}
.card.bad{border-top:4px solid var(--bad)}
.card.bad .n{color:var(--bad)}
.card.none{opacity:.65}
.card.skip{opacity:.65;border-style:dashed}
table{border-collapse:collapse;background:var(--card);font-size:13px}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#e8eefc;height:14px;border-radius:3px;min-width:2px}
.bar>span{display:block;height:100%;background:var(--acc);border-radius:3px}
.plots img{max-width:100%;background:#fff;border:1px solid var(--line);border-radius:6px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.tile{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:6px;
width:152px;font-size:11.5px}
.tile.pair{width:296px}
.tile .imgs{display:flex;gap:4px;align-items:flex-end}
.thumb{width:138px;height:138px;display:flex;align-items:center;justify-content:center;
background:repeating-conic-gradient(#eef0f3 0 25%,#fff 0 50%) 0 0/16px 16px;border-radius:4px;
overflow:hidden}
.thumb img{width:100%;height:100%;object-fit:contain}
.thumb img.px{image-rendering:pixelated}
.thumb.missing{color:var(--muted);font-size:11px;text-align:center;padding:4px}
.cap{margin-top:4px}
.cap .p{color:var(--muted);word-break:break-all}
.cap .b{white-space:nowrap}
.lab{font-weight:600}
.lab .arrow{color:var(--bad)}
.lab .sugg{color:var(--bad)}
.pill{display:inline-block;border-radius:9px;padding:0 6px;font-size:11px;background:#eef2f6}
.pill.keep{background:#d1fadf;color:#05603a}
.pill.drop{background:#fee4e2;color:#912018}
.pill.leak{background:#fef0c7;color:#93370d}
.groups{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
.group{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}
.group .gh{font-size:12px;color:var(--muted);margin-bottom:6px}
.group .gallery .tile{border-color:#f0f2f5}
.more{color:var(--muted);font-size:12.5px;margin-top:6px}
pre.code{background:var(--code);color:#e2e8f0;padding:12px 14px;border-radius:8px;
overflow:auto;font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
ul.warn li{color:#93370d}
.zero-list{color:var(--muted)}
footer{color:var(--muted);font-size:12px;padding:0 28px 24px}
"""


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt_num(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if math.isnan(f):
            return "–"
        if f == int(f) and abs(f) < 1e15:
            return f"{int(f):,}"
        return f"{f:.3g}" if abs(f) < 1000 else f"{f:,.0f}"
    return str(x)


def _is_missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def _mime_of(data: bytes) -> str | None:
    """MIME type of already-encoded image bytes that browsers show as they are."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _encode_image(img: Image.Image) -> tuple[bytes, str]:
    """Encode a PIL image for embedding: JPEG when opaque, PNG when it has alpha."""
    bio = io.BytesIO()
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img.convert("RGBA").save(bio, format="PNG", optimize=True)
        return bio.getvalue(), "image/png"
    img.convert("RGB").save(bio, format="JPEG", quality=85)
    return bio.getvalue(), "image/jpeg"


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8", "surrogateescape"))


# --------------------------------------------------------------------------------------
# thumbnails
# --------------------------------------------------------------------------------------
class ThumbnailStore:
    """Thumbnails of the images in a result, as ``data:`` URIs.

    Looks them up in the audit cache (namespace :func:`thumb_namespace`, key = the file's
    sha1) in one batch, makes the missing ones from the source file through
    :mod:`imgaudit.imaging` and puts them back in the cache, so each thumbnail is made
    once across audits and reports.

    Parameters
    ----------
    root
        Dataset root that the result's paths are relative to.
    sha1
        Series mapping path -> sha1 hex of the file bytes (NaN where unknown).
    cache
        The audit cache, or ``None`` to make thumbnails without caching them.
    size
        Longest side of thumbnails made here.
    """

    def __init__(
        self, root: str | Path, sha1: pd.Series | None, cache: Cache | None, size: int
    ) -> None:
        self.root = Path(root)
        self.sha1 = sha1
        self.cache = cache
        self.size = int(size)
        self._bytes: dict[str, bytes | None] = {}
        self._reason: dict[str, str] = {}
        self.made = 0
        self.from_cache = 0

    def _key(self, path: str) -> str | None:
        if self.sha1 is None or path not in self.sha1.index:
            return None
        v = self.sha1.loc[path]
        return None if _is_missing(v) or not str(v) else str(v)

    def prefetch(self, paths: Iterable[str]) -> None:
        """Load the thumbnails of ``paths`` (one cache query, then the misses)."""
        todo = [p for p in dict.fromkeys(paths) if p not in self._bytes]
        if not todo:
            return
        keys = {p: self._key(p) for p in todo}
        found: dict[str, bytes] = {}
        if self.cache is not None:
            found = self.cache.get_many(thumb_namespace(self.size), [k for k in keys.values() if k])
        new: dict[str, bytes] = {}
        for p in todo:
            k = keys[p]
            if k is not None and k in found:
                self._bytes[p] = found[k]
                self.from_cache += 1
                continue
            data = self._make(p)
            self._bytes[p] = data
            if data is not None and k is not None:
                new[k] = data
        if new and self.cache is not None:
            self.cache.put_many(thumb_namespace(self.size), new)

    def _make(self, path: str) -> bytes | None:
        from ..imaging import UnreadableImage

        try:
            data = make_thumbnail(self.root / path, self.size)
        except UnreadableImage as err:  # the tile says why instead of showing a picture
            self._reason[path] = err.reason
            return None
        self.made += 1
        return data

    def image(self, path: str) -> Image.Image | None:
        from PIL import Image

        self.prefetch([path])
        data = self._bytes.get(path)
        if data is None:
            return None
        img = Image.open(io.BytesIO(data))
        img.load()
        return img

    def uri(self, path: str, rotate: float = 0.0) -> str | None:
        """The thumbnail as a ``data:`` URI, rotated counter-clockwise by ``rotate`` degrees."""
        self.prefetch([path])
        data = self._bytes.get(path)
        if data is None:
            return None
        if rotate % 360 == 0:
            mime = _mime_of(data)
            if mime is not None:
                return _data_uri(data, mime)
        img = self.image(path)
        assert img is not None  # data is not None above
        if rotate % 360:
            img = img.rotate(rotate, expand=True)
        enc, mime = _encode_image(img)
        return _data_uri(enc, mime)

    def why_missing(self, path: str) -> str:
        return self._reason.get(path, "no thumbnail")


def _open_cache(result: Any) -> Cache | None:
    """The audit cache the result was made with (``None`` if caching was off)."""
    from ..cache import Cache
    from ..config import default_cache_dir

    cfg = getattr(result, "config", None) or {}
    cd = cfg.get("cache_dir")
    if cd is False:
        return None
    return Cache(Path(cd) if cd else default_cache_dir())


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------
class _Report:
    def __init__(
        self, result: Any, thumbs: ThumbnailStore, max_per_gallery: int, title: str | None
    ) -> None:
        self.r = result
        self.df: pd.DataFrame = result.issues
        self.summary: pd.DataFrame = result.summary
        self.info: dict[str, Any] = result.info or {}
        self.rec: dict[str, Any] = result.recommendations or {}
        self.cfg: dict[str, Any] = result.config or {}
        self.thumbs = thumbs
        self.cap = max(1, int(max_per_gallery))
        self.title = title or f"imgaudit report — {Path(str(result.root)).name or result.root}"
        self.types: list[str] = (
            [str(t) for t in self.summary["issue_type"]] if len(self.summary) else []
        )
        self.counts: dict[str, int] = (
            {
                str(t): int(n)
                for t, n in zip(self.summary["issue_type"], self.summary["num_issues"], strict=True)
            }
            if len(self.summary)
            else {}
        )
        self.skipped: dict[str, str] = skipped_checks(self.info)
        self.sections: list[str] = []

    # -- column access by exact name ---------------------------------------------------
    def col(self, name: str) -> pd.Series | None:
        return self.df[name] if name in self.df.columns else None

    def flagged(self, t: str) -> pd.DataFrame:
        ic = issue_col(t)
        if ic not in self.df.columns:
            return self.df.iloc[0:0]
        sub = self.df[self.df[ic].fillna(False).astype(bool)]
        sc = score_col(t)
        if sc in sub.columns:
            sub = sub.sort_values(sc, kind="stable", na_position="first")
        return sub

    @property
    def labels(self) -> pd.Series | None:
        lab = self.col("label")
        if lab is None or not lab.notna().any():
            return None
        return lab

    # -- tiles --------------------------------------------------------------------------
    def thumb_html(self, path: str, rotate: float = 0.0, alt: str = "") -> str:
        uri = self.thumbs.uri(path, rotate=rotate)
        if uri is None:
            return f'<div class="thumb missing">{_e(self.thumbs.why_missing(path))}</div>'
        # tiny images are scaled up to the tile: keep their pixels sharp, not smeared
        cls = ' class="px"' if self._tiny(path) else ""
        return f'<div class="thumb"><img{cls} src="{uri}" alt="{_e(alt or path)}"></div>'

    def _tiny(self, path: str) -> bool:
        if "width" not in self.df.columns or "height" not in self.df.columns:
            return False
        w, h = self.df.at[path, "width"], self.df.at[path, "height"]
        return not _is_missing(w) and not _is_missing(h) and max(float(w), float(h)) < 64

    def caption(self, path: str, row: pd.Series, t: str | None, extra: str = "") -> str:
        parts = [f'<div class="p" title="{_e(path)}">{_e(path)}</div>']
        lab = row.get("label")
        sugg = row.get(extra_col("label", "suggested")) if t == "label" else None
        if not _is_missing(lab):
            if sugg is not None and not _is_missing(sugg) and str(sugg) != str(lab):
                parts.append(
                    f'<div class="lab">{_e(lab)} <span class="arrow">&rarr;</span> '
                    f'<span class="sugg">{_e(sugg)}</span></div>'
                )
            else:
                parts.append(f'<div class="lab">{_e(lab)}</div>')
        bits = []
        w, h = row.get("width"), row.get("height")
        if not _is_missing(w) and not _is_missing(h):
            bits.append(f"{int(w)}×{int(h)}")
        sp = row.get("split")
        if not _is_missing(sp):
            bits.append(_e(sp))
        if t is not None:
            sc = row.get(score_col(t))
            if sc is not None and not _is_missing(sc):
                bits.append(f"score {float(sc):.2f}")
            conf = row.get(extra_col(t, "confidence"))
            if conf is not None and not _is_missing(conf):
                bits.append(f"conf {float(conf):.2f}")
        if bits:
            parts.append(
                "<div>" + " · ".join(f'<span class="b">{b}</span>' for b in bits) + "</div>"
            )
        if extra:
            parts.append(f"<div>{extra}</div>")
        return f'<div class="cap">{"".join(parts)}</div>'

    def tile(self, path: str, row: pd.Series, t: str | None, extra: str = "") -> str:
        return f'<div class="tile">{self.thumb_html(path)}{self.caption(path, row, t, extra)}</div>'

    # -- sections -----------------------------------------------------------------------
    def header(self) -> str:
        n = len(self.df)
        mode = self.cfg.get("label_mode")
        size = self.cfg.get("size")
        bits = [f"{n:,} images", f"root: {_e(self.r.root)}"]
        if size:
            bits.append(f"target size {int(size)} px")
        if mode:
            bits.append(f"label mode {_e(mode)}")
        bits.append(
            f"generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by imgaudit {__version__}"
        )
        return (
            f'<header><h1>{_e(self.title)}</h1><div class="meta">{" · ".join(bits)}</div></header>'
        )

    def nav(self) -> str:
        links = [("overview", "Overview"), ("classes", "Classes"), ("resolution", "Resolution")]
        out = [f'<a href="#{a}">{t}</a>' for a, t in links]
        for t in self.types:
            cls = "" if self.counts.get(t, 0) else ' class="zero"'
            out.append(f'<a href="#issue-{_slug(t)}"{cls}>{_e(t)} ({self.counts.get(t, 0):,})</a>')
        if self._rotation_info() is not None:
            out.append('<a href="#rotation-verdict">Rotation verdict</a>')
        out.append('<a href="#recommendations">Recommendations</a>')
        return f"<nav>{''.join(out)}</nav>"

    def overview(self) -> str:
        n = len(self.df)
        labs = self.labels
        k = int(labs.nunique()) if labs is not None else 0
        ics = [issue_col(t) for t in self.types if issue_col(t) in self.df.columns]
        any_flag = int(self.df[ics].fillna(False).astype(bool).any(axis=1).sum()) if ics else 0
        cards = [
            f'<div class="card big"><div class="n">{n:,}</div><div class="l">images</div></div>',
            f'<div class="card big"><div class="n">{k:,}</div><div class="l">classes</div></div>',
            f'<div class="card {"hit" if any_flag else "big"}"><div class="n">{any_flag:,}</div>'
            f'<div class="l">images with any issue ({(100.0 * any_flag / n if n else 0):.1f}%)'
            f"</div></div>",
        ]
        for t in self.types:
            c = self.counts.get(t, 0)
            cls = (
                "none"
                if c == 0
                else ("bad" if t in ("unreadable", "label", "exact_duplicates") else "hit")
            )
            pct = f" · {100.0 * c / n:.1f}%" if n and c else ""
            cards.append(
                f'<a class="card {cls}" href="#issue-{_slug(t)}"><div class="n">{c:,}</div>'
                f'<div class="l">{_e(t)}{pct}</div></a>'
            )
        for t, why in self.skipped.items():
            cards.append(
                f'<div class="card skip" title="{_e(why)}"><div class="n">–</div>'
                f'<div class="l">{_e(t)} skipped</div></div>'
            )
        skipped = ""
        if self.skipped:
            items = "".join(f"<li><b>{_e(t)}</b>: {_e(w)}</li>" for t, w in self.skipped.items())
            skipped = f"<h3>Checks skipped</h3><ul>{items}</ul>"
        warns = [str(w) for w in (self.rec.get("warnings") or [])]
        fix = ""
        if warns:
            # what to act on, first: the recommendation's warnings, on the first screen
            items = "".join(f"<li>{_e(w)}</li>" for w in warns[:6])
            more = (
                f'<li><a href="#recommendations">{len(warns) - 6} more</a></li>'
                if len(warns) > 6
                else ""
            )
            fix = (
                '<h3>Fix first</h3><ul class="warn">'
                f'{items}{more}</ul><p class="desc">The fastai pipeline these findings call for is '
                '<a href="#recommendations">at the end</a>.</p>'
            )
        return (
            f'<section id="overview"><h2>Overview</h2><div class="cards">{"".join(cards)}</div>'
            f"{fix}{skipped}</section>"
        )

    def classes(self) -> str:
        labs = self.labels
        if labs is None:
            body = '<p class="desc">The dataset has no labels.</p>'
            return f'<section id="classes"><h2>Class distribution</h2>{body}</section>'
        counts = labs.value_counts().sort_index()
        ics = [issue_col(t) for t in self.types if issue_col(t) in self.df.columns]
        flag = (
            self.df[ics].fillna(False).astype(bool).any(axis=1)
            if ics
            else pd.Series(False, index=self.df.index)
        )
        flagged = flag.groupby(labs).sum()
        split = self.col("split")
        splits = (
            sorted(split.dropna().unique()) if split is not None and split.notna().any() else []
        )
        per_split = pd.crosstab(labs, split) if splits else None
        top = int(counts.max()) if len(counts) else 1
        head = "<tr><th>class</th><th>images</th><th></th>"
        head += "".join(f"<th>{_e(s)}</th>" for s in splits) + "<th>flagged</th></tr>"
        rows = []
        shown = counts
        if len(counts) > MAX_CLASS_ROWS:
            # many classes: the largest and the smallest tell the imbalance story
            half = MAX_CLASS_ROWS // 2
            by_size = counts.sort_values(ascending=False, kind="stable")
            shown = pd.concat([by_size.iloc[:half], by_size.iloc[-half:]])
        for i, (cls, c) in enumerate(shown.items()):
            if len(shown) < len(counts) and i == MAX_CLASS_ROWS // 2:
                ncols = 4 + len(splits)
                rows.append(
                    f'<tr><td colspan="{ncols}" class="more">… {len(counts) - len(shown):,} '
                    "classes in between …</td></tr>"
                )
            w = 100.0 * c / top
            cells = "".join(
                f'<td class="num">{int(per_split.loc[cls, s]) if per_split is not None and s in per_split.columns else 0:,}</td>'
                for s in splits
            )
            rows.append(
                f'<tr><td>{_e(cls)}</td><td class="num">{int(c):,}</td>'
                f'<td class="barcell"><div class="bar"><span style="width:{w:.1f}%"></span></div></td>'
                f'{cells}<td class="num">{int(flagged.get(cls, 0)):,}</td></tr>'
            )
        nolab = int(labs.isna().sum())
        ratio = (counts.max() / counts.min()) if len(counts) and counts.min() > 0 else float("nan")
        desc = (
            f'<p class="desc">{len(counts)} classes; largest/smallest = {_fmt_num(ratio)}'
            + (f"; {nolab:,} images without a label" if nolab else "")
            + ".</p>"
        )
        return (
            f'<section id="classes"><h2>Class distribution</h2>{desc}'
            f"<table>{head}{''.join(rows)}</table></section>"
        )

    def resolution(self) -> str:
        w, h = self.col("width"), self.col("height")
        size = int(self.cfg.get("size") or 224)
        if w is None or h is None or not (w.notna() & h.notna()).any():
            body = '<p class="desc">No image sizes in this result.</p>'
            return f'<section id="resolution"><h2>Resolution</h2>{body}</section>'
        ok = w.notna() & h.notna()
        short = np.minimum(w[ok].astype(float), h[ok].astype(float))
        below = int((short < size).sum())
        desc = (
            f'<p class="desc">Median {int(np.median(w[ok]))}×{int(np.median(h[ok]))} px; '
            f"short side median {int(np.median(short))} px; {below:,} of {int(ok.sum()):,} "
            f"images ({100.0 * below / max(1, int(ok.sum())):.1f}%) have a short side below "
            f"the target size {size} px and get upsampled.</p>"
        )
        png = resolution_png(self.df, size)
        img = f'<div class="plots"><img alt="resolution plots" src="{_data_uri(png, "image/png")}"></div>'
        return f'<section id="resolution"><h2>Resolution</h2>{desc}{img}</section>'

    def galleries(self) -> str:
        parts = ['<section id="issues"><h2>Issues, worst first</h2><div class="gals">']
        zero = [t for t in self.types if self.counts.get(t, 0) == 0]
        n = len(self.df)
        found = [t for t in self.types if self.counts.get(t, 0)]
        # types that flag most of the dataset describe the data, not a few bad images:
        # they go last, after the findings a reader can act on image by image
        found.sort(key=lambda t: bool(n) and self.counts[t] > 0.5 * n)
        parts += [self.gallery(t) for t in found]
        parts.append("</div>")
        if zero:
            # the nav links of issue types without findings land on this line
            anchors = "".join(f'<span id="issue-{_slug(t)}"></span>' for t in zero)
            parts.append(
                f'<p class="zero-list">{anchors}No issues found for: '
                + ", ".join(_e(t) for t in zero)
                + ".</p>"
            )
        parts.append("</section>")
        return "".join(parts)

    def gallery(self, t: str) -> str:
        sub = self.flagged(t)
        total = self.counts.get(t, len(sub))
        desc = DESCRIPTIONS.get(t, f"Images flagged by the {t} check.")
        head = (
            # a few findings need little room: let such galleries sit side by side
            f'<div class="gal" id="issue-{_slug(t)}"{" data-small" if total <= 3 else ""}>'
            f"<h3>{_e(t)} — {total:,} image"
            f'{"s" if total != 1 else ""}</h3><p class="desc">{_e(desc)}</p>'
        )
        if t == "unreadable":
            body = self.unreadable(sub)
        elif self._group_source(t) is not None:
            body = self.duplicates(t, sub)
        elif t == "rotation":
            body = self.rotation(sub)
        else:
            body = self.plain(t, sub)
        return head + body + "</div>"

    def _more(self, shown: int, total: int, what: str = "images") -> str:
        if shown >= total:
            return ""
        return f'<p class="more">Showing the worst {shown:,} of {total:,} {what}; all are in the issues table.</p>'

    def plain(self, t: str, sub: pd.DataFrame) -> str:
        cap = self.cap
        note = ""
        n = len(self.df)
        if n and len(sub) > 0.5 * n:
            # flagging most of the dataset describes the dataset, not a few bad images
            cap = min(cap, 6)
            note = (
                f'<p class="desc"><b>{100.0 * len(sub) / n:.0f}% of the dataset</b>: a property '
                "of the data as a whole rather than of individual images.</p>"
            )
        top = sub.iloc[:cap]
        self.thumbs.prefetch(top.index)
        tiles = [self.tile(str(p), row, t) for p, row in top.iterrows()]
        return (
            note + f'<div class="gallery">{"".join(tiles)}</div>' + self._more(len(top), len(sub))
        )

    def unreadable(self, sub: pd.DataFrame) -> str:
        reason = None
        for name in (extra_col("unreadable", "reason"), extra_col("unreadable", "error"), "error"):
            if name in sub.columns:
                reason = sub[name]
                break
        cap = max(self.cap, 200)  # a text row is cheap: list more than a gallery shows
        rows = []
        for p in sub.index[:cap]:
            why = "" if reason is None or _is_missing(reason.loc[p]) else str(reason.loc[p])
            lab = sub.loc[p, "label"] if "label" in sub.columns else None
            rows.append(
                f"<tr><td>{_e(p)}</td><td>{'' if _is_missing(lab) else _e(lab)}</td>"
                f"<td>{_e(why)}</td></tr>"
            )
        return (
            "<table><tr><th>file</th><th>label</th><th>reason</th></tr>"
            + "".join(rows)
            + "</table>"
            + self._more(min(cap, len(sub)), len(sub), "files")
        )

    def rotation(self, sub: pd.DataFrame) -> str:
        top = sub.iloc[: self.cap]
        self.thumbs.prefetch(top.index)
        sug_col = extra_col("rotation", "suggested")
        tiles = []
        for p, row in top.iterrows():
            p = str(p)
            deg = row.get(sug_col)
            deg = 0.0 if deg is None or _is_missing(deg) else float(deg)
            extra = f"rotate {deg:g}° to upright" if deg else ""
            tiles.append(
                '<div class="tile pair"><div class="imgs">'
                f'<div>{self.thumb_html(p)}<div class="p">as given</div></div>'
                f"<div>{self.thumb_html(p, rotate=deg, alt=f'{p} uprighted')}"
                f'<div class="p">uprighted ({deg:g}°)</div></div>'
                f"</div>{self.caption(p, row, 'rotation', extra)}</div>"
            )
        return f'<div class="gallery">{"".join(tiles)}</div>' + self._more(len(top), len(sub))

    def _group_source(self, t: str) -> str | None:
        """The duplicate check whose groups show issue type ``t`` (``None``: not grouped)."""
        if extra_col(t, "group") in self.df.columns:
            return t
        # label conflicts and split leaks are findings about near-duplicate groups: show
        # the whole group, so the reader sees the other label / the training copy
        if (
            t in GROUPED_BY_NEAR_DUPLICATES
            and extra_col("near_duplicates", "group") in self.df.columns
        ):
            return "near_duplicates"
        return None

    def duplicates(self, t: str, sub: pd.DataFrame) -> str:
        src = self._group_source(t)
        assert src is not None  # gallery() dispatches here only when there is one
        gcol, kcol, dcol = (
            extra_col(src, "group"),
            extra_col(src, "keep"),
            extra_col(src, "distance"),
        )
        own = src == t
        flagged_set = set(sub.index)
        groups = self.df[gcol]
        valid = groups.notna()
        if pd.api.types.is_numeric_dtype(groups):
            valid &= groups.astype(float) >= 0
        # worst group first: the group of the worst-scored flagged member
        order = list(dict.fromkeys(groups.loc[sub.index][valid.loc[sub.index]]))
        members = self.df[valid & groups.isin(order)]
        by_group = {g: idx for g, idx in members.groupby(gcol, sort=False).groups.items()}
        keep = self.df[kcol] if kcol in self.df.columns else None
        split = self.col("split")
        out = []
        shown_imgs = 0
        shown_groups = 0
        per_group = 6
        for g in order:
            if shown_imgs >= self.cap:
                break
            idx = list(by_group.get(g, []))
            if not idx:
                continue
            keeper = self._keeper(idx, keep)
            # keeper first, then the images this gallery is about, then the rest
            idx.sort(key=lambda p: (p != keeper, p not in flagged_set, str(p)))
            show = idx[:per_group]
            self.thumbs.prefetch(show)
            spl = {
                str(split.loc[p])
                for p in idx
                if split is not None and not _is_missing(split.loc[p])
            }
            leak = (
                ' <span class="pill leak">spans splits: ' + _e(", ".join(sorted(spl))) + "</span>"
                if len(spl) > 1
                else ""
            )
            labs = {
                str(self.df.loc[p, "label"])
                for p in idx
                if "label" in self.df.columns and not _is_missing(self.df.loc[p, "label"])
            }
            conflict = ' <span class="pill drop">labels disagree</span>' if len(labs) > 1 else ""
            tiles = []
            for p in show:
                if own:
                    pill = (
                        '<span class="pill keep">keep</span>'
                        if p == keeper
                        else '<span class="pill drop">duplicate</span>'
                        if keeper is not None
                        else ""
                    )
                else:
                    pill = f'<span class="pill drop">{_e(t)}</span>' if p in flagged_set else ""
                if dcol in self.df.columns and p != keeper:
                    d = self.df.at[p, dcol]
                    if not _is_missing(d) and float(d) >= 0:
                        pill += f' <span class="b">distance {int(d)}</span>'
                tiles.append(
                    self.tile(str(p), self.df.loc[p], t if p in flagged_set else None, pill)
                )
            more = (
                f'<p class="more">+{len(idx) - len(show)} more in this group</p>'
                if len(idx) > len(show)
                else ""
            )
            out.append(
                f'<div class="group"><div class="gh">group {_e(g)} · {len(idx)} images{leak}{conflict}</div>'
                f'<div class="gallery">{"".join(tiles)}</div>{more}</div>'
            )
            shown_imgs += len(show)
            shown_groups += 1
        ngroups = len(order)
        return f'<div class="groups">{"".join(out)}</div>' + self._more(
            shown_groups, ngroups, "groups"
        )

    @staticmethod
    def _keeper(idx: Sequence[Any], keep: pd.Series | None) -> Any:
        if keep is None:
            return None
        vals = keep.loc[list(idx)]
        if pd.api.types.is_bool_dtype(vals) or set(vals.dropna().unique()) <= {True, False}:
            hits = [p for p, v in vals.items() if bool(v) is True and not _is_missing(v)]
            return hits[0] if hits else None
        # a path column: the one to keep, same on every member
        named = [v for v in vals if not _is_missing(v)]
        return named[0] if named and named[0] in set(idx) else None

    def _rotation_info(self) -> dict[str, Any] | None:
        rot = self.info.get("rotation")
        return rot if isinstance(rot, dict) and rot else None

    def rotation_verdict(self) -> str:
        rot = self._rotation_info()
        if rot is None:
            return ""
        parts = [
            '<section id="rotation-verdict"><h2>Rotation verdict</h2>',
            '<p class="desc">Each image is predicted under each view by the out-of-fold model '
            "that never trained on it. A view the model still recognises is <b>safe</b> as a "
            "training augmentation; one that destroys the accuracy is <b>unsafe</b> (the "
            "orientation carries label information).</p>",
        ]
        if "skipped" in rot:
            parts.append(f'<p class="desc">Rotated-image search skipped: {_e(rot["skipped"])}</p>')
        views = rot.get("views")
        if isinstance(views, dict) and views:
            if "sensitive" in rot:
                msg = (
                    "Right-angle rotations change what the images show: do not use them "
                    "(nor <code>dihedral</code>) as augmentation."
                    if rot["sensitive"]
                    else "No right-angle rotation was found unsafe."
                )
                parts.append(f"<p><b>{msg}</b></p>")
            head = (
                "<tr><th>view</th><th>verdict</th><th>accuracy</th><th>as stored</th>"
                "<th>retention (interval)</th><th>agreement</th><th>evidence</th></tr>"
            )
            rows = []
            for name, st in views.items():
                st = st if isinstance(st, dict) else {}
                rows.append(
                    f"<tr><td>{_e(name)}</td><td>{_verdict_pill(st.get('verdict'))}</td>"
                    f'<td class="num">{_pct(st.get("accuracy"))}</td>'
                    f'<td class="num">{_pct(st.get("accuracy_identity"))}</td>'
                    f'<td class="num">{_pct(st.get("retention"))} ({_pct(st.get("retention_low"))}'
                    f"..{_pct(st.get('retention_high'))})</td>"
                    f'<td class="num">{_pct(st.get("agreement"))}</td>'
                    f"<td>{_e(st.get('evidence', ''))}</td></tr>"
                )
            parts.append(f"<table>{head}{''.join(rows)}</table>")
            per_class = rot.get("per_class")
            if isinstance(per_class, dict) and per_class:
                vnames = list(views)
                prow = []
                for cls, cv in list(per_class.items())[:MAX_CLASS_ROWS]:
                    cv = cv if isinstance(cv, dict) else {}
                    cells = "".join(
                        f'<td title="{_e((cv.get(v) or {}).get("evidence", ""))}">'
                        f"{_verdict_pill((cv.get(v) or {}).get('verdict'))}</td>"
                        for v in vnames
                    )
                    prow.append(f"<tr><th>{_e(cls)}</th>{cells}</tr>")
                parts.append(
                    "<h3>Per class</h3><table><tr><th>class</th>"
                    + "".join(f"<th>{_e(v)}</th>" for v in vnames)
                    + "</tr>"
                    + "".join(prow)
                    + "</table>"
                    + (
                        f'<p class="more">First {len(prow)} of {len(per_class):,} classes; all '
                        'are in <code>result.info["rotation"]["per_class"]</code>.</p>'
                        if len(prow) < len(per_class)
                        else ""
                    )
                )
            pairs = rot.get("pairs")
            if isinstance(pairs, dict) and any(pairs.values()):
                items = []
                for v, lst in pairs.items():
                    if not lst:
                        continue
                    # the most frequent few per view; the rest stay in result.info
                    bits = [
                        f"<b>{_e(pr.get('from'))}</b>&rarr;<b>{_e(pr.get('to'))}</b> "
                        f"({_fmt_num(pr.get('count'))}, {_pct(pr.get('fraction'))})"
                        for pr in lst[:MAX_PAIRS_PER_VIEW]
                    ]
                    more = (
                        f", +{len(lst) - MAX_PAIRS_PER_VIEW} more"
                        if len(lst) > MAX_PAIRS_PER_VIEW
                        else ""
                    )
                    items.append(f"<li>{_e(v)}: {', '.join(bits)}{more}</li>")
                parts.append(
                    "<h3>Classes a view turns into each other</h3>"
                    '<p class="desc">given class &rarr; predicted class after the view (images, '
                    "share of the class's correctly recognised images)</p><ul>"
                    + "".join(items)
                    + "</ul>"
                )
        else:
            for k, v in rot.items():
                if isinstance(v, (dict, list)) and v:
                    parts.append(f"<h3>{_e(k)}</h3>{_table_of(v)}")
        scalars = {
            k: v
            for k, v in rot.items()
            if k not in ("skipped", "verdicts") and not isinstance(v, (dict, list))
        }
        if scalars:
            rows_s = "".join(
                f"<tr><th>{_e(k)}</th><td>{_e(_fmt_num(v))}</td></tr>" for k, v in scalars.items()
            )
            parts.append(f"<h3>Details</h3><table>{rows_s}</table>")
        parts.append("</section>")
        return "".join(parts)

    def recommendations(self) -> str:
        parts = ['<section id="recommendations"><h2>Recommended fastai pipeline</h2>']
        code = self.rec.get("code")
        if code:
            parts.append(f'<pre class="code"><code>{_e(code)}</code></pre>')
        else:
            parts.append('<p class="desc">No recommendations in this result.</p>')
        reasons = self.rec.get("reasons") or []
        if reasons:
            parts.append(
                "<h3>Why</h3><ul>" + "".join(f"<li>{_e(x)}</li>" for x in reasons) + "</ul>"
            )
        warns = self.rec.get("warnings") or []
        if warns:
            parts.append(
                '<h3>Warnings</h3><ul class="warn">'
                + "".join(f"<li>{_e(x)}</li>" for x in warns)
                + "</ul>"
            )
        parts.append("</section>")
        return "".join(parts)

    def render(self) -> str:
        body = [
            self.header(),
            self.nav(),
            "<main>",
            self.overview(),
            # side by side on a wide screen: the galleries come into view sooner
            '<div class="row2">',
            self.classes(),
            self.resolution(),
            "</div>",
            self.galleries(),
            self.rotation_verdict(),
            self.recommendations(),
            "</main>",
            f"<footer>Made by imgaudit {__version__}. Self-contained: this file references "
            "no network resource.</footer>",
        ]
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(self.title)}</title><style>{_CSS}</style></head><body>"
            + "".join(body)
            + "</body></html>\n"
        )


#: most classes listed in the class table (half largest, half smallest)
MAX_CLASS_ROWS = 40

#: class pairs listed per view in the rotation verdict
MAX_PAIRS_PER_VIEW = 5

#: issue types written by the near-duplicate check about its groups
GROUPED_BY_NEAR_DUPLICATES = ("label_conflict", "split_leak")


def skipped_checks(info: dict[str, Any]) -> dict[str, str]:
    """``{check: reason}`` for the checks the audit skipped (``info[check]["skipped"]``)."""
    return {
        str(k): v["skipped"]
        for k, v in (info or {}).items()
        if isinstance(v, dict) and isinstance(v.get("skipped"), str)
    }


def _pct(x: Any) -> str:
    if x is None or _is_missing(x):
        return "–"
    return f"{100.0 * float(x):.0f}%"


def _verdict_pill(v: Any) -> str:
    if v is None or _is_missing(v):
        return ""
    cls = {"safe": "keep", "unsafe": "drop", "unclear": ""}.get(str(v), "")
    return f'<span class="pill {cls}">{_e(v)}</span>'


def _table_of(v: Any) -> str:
    """An HTML table of a JSON-shaped value: a dict of dicts, a list of dicts, or a dict."""
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):
            cols = list(dict.fromkeys(k for x in v for k in x))
            rows = "".join(
                "<tr>" + "".join(f"<td>{_e(_fmt_num(x.get(c, '')))}</td>" for c in cols) + "</tr>"
                for x in v
            )
            return (
                "<table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + f"</tr>{rows}</table>"
            )
        return f"<p>{_e(', '.join(_fmt_num(x) for x in v))}</p>"
    if isinstance(v, dict):
        if v and all(isinstance(x, dict) for x in v.values()):
            cols = list(dict.fromkeys(k for x in v.values() for k in x))
            rows = "".join(
                f"<tr><th>{_e(k)}</th>"
                + "".join(f"<td>{_cell(x.get(c, ''))}</td>" for c in cols)
                + "</tr>"
                for k, x in v.items()
            )
            return (
                "<table><tr><th></th>"
                + "".join(f"<th>{_e(c)}</th>" for c in cols)
                + f"</tr>{rows}</table>"
            )
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_cell(x)}</td></tr>" for k, x in v.items())
        return f"<table>{rows}</table>"
    return f"<p>{_e(_fmt_num(v))}</p>"


def _cell(x: Any) -> str:
    if isinstance(x, (dict, list)):
        return _e(json.dumps(x)[:300])
    return _e(_fmt_num(x))


# --------------------------------------------------------------------------------------
# resolution plot
# --------------------------------------------------------------------------------------
def resolution_png(issues: pd.DataFrame, size: int) -> bytes:
    """PNG bytes of the resolution plots of an issues frame against the target ``size``.

    Draws :func:`imgaudit.plots.resolution_plot` (width x height scatter coloured by
    class, short-side histogram, both with the target size marked) from the
    ``width``/``height``/``label`` columns of ``result.issues``.

    Example
    -------
    >>> IPython.display.Image(resolution_png(result.issues, 224))  # doctest: +SKIP
    """
    from ..plots import resolution_plot

    ok = issues["width"].notna() & issues["height"].notna()
    if issue_col("unreadable") in issues.columns:
        ok &= ~issues[issue_col("unreadable")].fillna(False).astype(bool)
    records = pd.DataFrame(
        {"ok": ok, "width": issues["width"], "height": issues["height"]}, index=issues.index
    )
    labels = (
        issues["label"] if "label" in issues.columns and issues["label"].notna().any() else None
    )
    with tempfile.TemporaryDirectory(prefix="imgaudit-plot-") as tmp:
        out = resolution_plot(records, labels, int(size), Path(tmp) / "resolution.png")
        return out.read_bytes()


# --------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------
def write_report(
    result: AuditResult,
    path: str | Path = "report.html",
    *,
    max_per_gallery: int = 40,
    cache: Cache | None | bool = True,
    thumbnail_size: int | None = None,
    title: str | None = None,
) -> Path:
    """Write the self-contained HTML report of ``result`` to ``path``.

    Parameters
    ----------
    result
        An :class:`~imgaudit.result.AuditResult` (anything with its ``issues``,
        ``summary``, ``info``, ``recommendations``, ``config`` and ``root``).
    path
        Output file; written atomically (a reader never sees half a report).
    max_per_gallery
        Most images shown per issue type (worst first). Counts stay complete.
    cache
        ``True``: the audit cache the result was made with (thumbnails made by the
        decode pass are reused, new ones are stored); ``False``/``None``: no cache;
        or a :class:`~imgaudit.cache.Cache`.
    thumbnail_size
        Longest side of thumbnails made here (default: the audit's ``thumbnail_size``).
    title
        Page title (default: ``imgaudit report — <dataset folder>``).

    Returns
    -------
    pathlib.Path
        The written file.

    Example
    -------
    >>> result = imgaudit.audit("data/digits")                 # doctest: +SKIP
    >>> write_report(result, "report.html", max_per_gallery=24)  # doctest: +SKIP
    """
    out = Path(path)
    own_cache = cache is True
    c: Cache | None = _open_cache(result) if cache is True else (cache or None)  # type: ignore[assignment]
    size = int(thumbnail_size or (result.config or {}).get("thumbnail_size") or 128)
    sha1 = result.issues["sha1"] if "sha1" in result.issues.columns else None
    thumbs = ThumbnailStore(result.root, sha1, c, size)
    try:
        html_text = _Report(result, thumbs, max_per_gallery, title).render()
    finally:
        if own_cache and c is not None:
            c.close()
    _atomic_write_text(out, html_text)
    logger.info(
        "report written to %s (%d thumbnails from cache, %d made)",
        out,
        thumbs.from_cache,
        thumbs.made,
    )
    return out
