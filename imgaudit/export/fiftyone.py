"""Export an audit to FiftyOne, review it in the App, and read the reviewer's decisions back.

The export is a persistent FiftyOne dataset, one sample per audited image:

- ``filepath`` (absolute; unreadable files get a sample too, FiftyOne only needs a path),
  ``imgaudit_path`` (the path relative to the dataset root, the key back into the result)
  and ``imgaudit_label`` (the label as given, so reviewer corrections can be told apart),
- ``ground_truth``: a ``fo.Classification`` of the given label; reviewers correct it here,
- ``suggestion``: a ``fo.Classification`` of the out-of-fold prediction
  (``label_suggested``) with its confidence (``label_confidence``), when labels were checked,
- one float field per ``<check>_score`` (lower = worse), and a sample tag ``issue:<check>``
  per issue found, plus ``issue:split_leak`` for images duplicating an image of an
  earlier split,
- per duplicate check ``<check>_group`` (group id, only for groups of two or more) and
  ``<check>_keep`` (the copy a cleaned dataset keeps),
- ``split``, ``width``, ``height``, ``rotation_suggested`` and the result's other scalar
  columns (format, mode, file size, ...),
- one saved view per issue type found, worst first (duplicates grouped together, the
  copy to keep first), and the summary and recommendations in ``dataset.info["imgaudit"]``.

Reviewers tag samples ``remove``, ``keep`` or ``relabel`` and may edit
``ground_truth.label``; :func:`read_review` returns those decisions and
:func:`imgaudit.export.csv.clean_labels` applies them over the automatic policy.

Database: FiftyOne's embedded MongoDB (package ``fiftyone-db``) is used by default, with
its data under ``~/.fiftyone`` or ``$FIFTYONE_DATABASE_DIR``. To use your own MongoDB
server instead, set ``FIFTYONE_DATABASE_URI=mongodb://host:27017`` before importing
FiftyOne (see FiftyOne's configuration docs); nothing here depends on which one runs.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..columns import extra_col, issue_col, score_col
from . import SPLIT_LEAK, duplicate_checks, group_ids, issue_types, keep_flags, split_leaks

if TYPE_CHECKING:
    import fiftyone as fo

logger = logging.getLogger(__name__)

#: sample tags a reviewer sets in the App; anything else not starting with ``issue:``
#: is also carried over on re-export
REVIEW_TAGS = ("remove", "keep", "relabel")
ISSUE_TAG_PREFIX = "issue:"
PATH_FIELD = "imgaudit_path"
LABEL_FIELD = "imgaudit_label"
GT_FIELD = "ground_truth"
SUGGESTION_FIELD = "suggestion"
INFO_KEY = "imgaudit"
#: saved views are created in this order (the ones a reviewer should look at first),
#: then any other issue type in the result's order
VIEW_ORDER = (
    "label",
    "exact_duplicates",
    "near_duplicates",
    SPLIT_LEAK,
    "rotation",
    "low_resolution",
    "unreadable",
)
# result columns that become dedicated fields (or tags) instead of being copied as-is
_HANDLED = {"label", extra_col("label", "suggested"), extra_col("label", "confidence")}
# image properties that are whole numbers even when pandas holds them as floats
_INTEGER_COLUMNS = {"width", "height", "channels", "file_size", "exif_orientation"}
# sample fields FiftyOne owns or we set ourselves
_RESERVED = {
    "id", "_id", "filepath", "tags", "metadata", "media_type", "created_at",
    "last_modified_at", "dataset_id", GT_FIELD, SUGGESTION_FIELD, PATH_FIELD, LABEL_FIELD,
}  # fmt: skip


def _fo() -> Any:
    # imported lazily: importing fiftyone takes seconds and reads its config (database
    # location) at import time, which callers and tests may still be setting up
    import fiftyone

    return fiftyone


# ---------------------------------------------------------------------------- export
def default_name(result: Any) -> str:
    """``imgaudit-<root folder name>-<6 hex digits of the absolute root>``.

    The hash keeps two datasets whose folders share a name (``train``, ``images``) apart.
    """
    root = Path(str(result.root)).absolute()
    digest = hashlib.sha1(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:6]
    return f"imgaudit-{root.name or 'dataset'}-{digest}"


def _py(value: Any) -> Any:
    """A plain Python scalar for a field value; missing values become ``None``."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _scalar_columns(issues: pd.DataFrame, skip: set[str]) -> dict[str, list[Any]]:
    """The remaining columns that can be plain scalar fields, as lists of Python values."""
    out: dict[str, list[Any]] = {}
    for col in issues.columns:
        name = str(col)
        if name in skip or name in _RESERVED or name.startswith("_") or "." in name:
            continue
        values = [_py(v) for v in issues[col].tolist()]
        kinds = {type(v) for v in values if v is not None}
        if not kinds:
            continue
        if (
            name in _INTEGER_COLUMNS
            and kinds <= {int, float}
            and all(v is None or float(v).is_integer() for v in values)
        ):
            # NaN for unreadable rows makes pandas store these counts as floats
            out[name] = [None if v is None else int(v) for v in values]
        elif kinds <= {bool} or kinds <= {int} or kinds <= {int, float} or kinds <= {str}:
            if kinds == {int, float}:
                values = [None if v is None else float(v) for v in values]
            out[name] = values
        elif kinds <= {bool, int, float, str}:
            # mixed kinds in one column would give the field two types: store as text
            out[name] = [None if v is None else str(v) for v in values]
        else:
            logger.debug("column %r not exported to FiftyOne (non-scalar values)", name)
    return out


def _fingerprint(result: Any) -> str:
    """A short hash of what the export shows, to tell whether a dataset is stale."""
    h = hashlib.sha1()
    h.update(str(Path(str(result.root)).absolute()).encode("utf-8", "surrogateescape"))
    h.update(pd.util.hash_pandas_object(result.issues.astype(str), index=True).to_numpy().tobytes())
    return h.hexdigest()


def _build_samples(result: Any) -> tuple[list[Any], dict[str, int], list[str]]:
    """Samples for every row of ``result.issues``, the number flagged per issue type and
    the duplicate checks (see :func:`imgaudit.export.duplicate_checks`)."""
    fo = _fo()
    issues: pd.DataFrame = result.issues
    types = issue_types(result)
    dups = duplicate_checks(issues, types)
    root = Path(str(result.root)).absolute()
    n = len(issues)

    tags: list[list[str]] = [[] for _ in range(n)]
    counts: dict[str, int] = {}
    fields: dict[str, list[Any]] = {}
    for t in types:
        flags = issues[issue_col(t)].fillna(False).astype(bool).to_numpy()
        counts[t] = int(flags.sum())
        for j in np.flatnonzero(flags):
            tags[j].append(ISSUE_TAG_PREFIX + t)
        sc = score_col(t)
        if sc in issues.columns:
            fields[sc] = [_py(v) for v in issues[sc].astype(float).tolist()]

    leaks = split_leaks(issues, types)
    lic, lsc, lgc = issue_col(SPLIT_LEAK), score_col(SPLIT_LEAK), extra_col(SPLIT_LEAK, "group")
    if SPLIT_LEAK not in types and leaks[lic].any():
        counts[SPLIT_LEAK] = int(leaks[lic].sum())
        for j in np.flatnonzero(leaks[lic].to_numpy()):
            tags[j].append(ISSUE_TAG_PREFIX + SPLIT_LEAK)
        fields[lsc] = [_py(v) for v in leaks[lsc].tolist()]
    if leaks[lgc].notna().any():
        fields[lgc] = [_py(v) for v in leaks[lgc].tolist()]

    for c in dups:
        gid = group_ids(issues, c)
        keep = keep_flags(issues, c, gid)
        fields[extra_col(c, "group")] = [_py(v) for v in gid.tolist()]
        fields[extra_col(c, "keep")] = [
            None if g is None else bool(k) for g, k in zip(gid.tolist(), keep.tolist(), strict=True)
        ]

    skip = set(_HANDLED) | set(fields) | {issue_col(t) for t in types}
    skip |= {extra_col(c, "group") for c in dups} | {extra_col(c, "keep") for c in dups}
    fields.update(_scalar_columns(issues, skip))

    labels = issues["label"].tolist() if "label" in issues.columns else [None] * n
    sug_col, conf_col = extra_col("label", "suggested"), extra_col("label", "confidence")
    suggested = issues[sug_col].tolist() if sug_col in issues.columns else [None] * n
    confidence = issues[conf_col].tolist() if conf_col in issues.columns else [None] * n

    samples = []
    for i, path in enumerate(issues.index):
        label = _py(labels[i])
        sample = fo.Sample(
            filepath=str(root / str(path)),
            tags=tags[i],
            **{PATH_FIELD: str(path), LABEL_FIELD: None if label is None else str(label)},
        )
        if label is not None:
            sample[GT_FIELD] = fo.Classification(label=str(label))
        sug = _py(suggested[i])
        if sug is not None:
            conf = _py(confidence[i])
            sample[SUGGESTION_FIELD] = fo.Classification(
                label=str(sug), confidence=None if conf is None else float(conf)
            )
        for name, values in fields.items():
            if values[i] is not None:
                sample[name] = values[i]
        samples.append(sample)
    return samples, counts, dups


def _save_views(ds: Any, counts: dict[str, int], dups: list[str]) -> list[str]:
    """One saved view per issue type with at least one image, worst first."""
    from fiftyone import ViewField as F

    ordered = [t for t in VIEW_ORDER if t in counts] + [t for t in counts if t not in VIEW_ORDER]
    saved = []
    for t in ordered:
        if counts[t] == 0:
            continue
        if t in dups:
            g, k = extra_col(t, "group"), extra_col(t, "keep")
            view = ds.match(F(g) != None).sort_by([(g, 1), (k, -1)])  # noqa: E711
            desc = f"{counts[t]} images flagged {t}; each group together, the copy to keep first"
        elif t == SPLIT_LEAK and ds.has_sample_field(extra_col(t, "group")):
            g, s = extra_col(t, "group"), score_col(t)
            grouped = (F(g) != None) | F("tags").contains(ISSUE_TAG_PREFIX + t)  # noqa: E711
            view = ds.match(grouped).sort_by([(g, 1), (s, -1)])
            desc = (
                f"{counts[t]} images duplicating an image of an earlier split; each group "
                "together, the earliest-split copy first"
            )
        else:
            view = ds.match_tags(ISSUE_TAG_PREFIX + t)
            if ds.has_sample_field(score_col(t)):
                view = view.sort_by(score_col(t))
            desc = f"{counts[t]} images flagged {t}, worst (lowest {score_col(t)}) first"
        ds.save_view(t, view, description=desc)
        saved.append(t)
    return saved


def _reviewer_state(ds: Any) -> dict[str, tuple[list[str], str | None]]:
    """``{path: (reviewer tags, corrected label or None)}`` for samples a reviewer touched."""
    if not ds.has_sample_field(PATH_FIELD):
        return {}
    paths = ds.values(PATH_FIELD)
    all_tags = ds.values("tags")
    given = ds.values(LABEL_FIELD) if ds.has_sample_field(LABEL_FIELD) else [None] * len(paths)
    current = (
        ds.values(f"{GT_FIELD}.label") if ds.has_sample_field(GT_FIELD) else [None] * len(paths)
    )
    state = {}
    for path, tags, orig, now in zip(paths, all_tags, given, current, strict=True):
        kept = [t for t in (tags or []) if not t.startswith(ISSUE_TAG_PREFIX)]
        corrected = now if now is not None and now != orig else None
        if kept or corrected is not None:
            state[path] = (kept, corrected)
    return state


def to_fiftyone(
    result: Any,
    name: str | None = None,
    overwrite: bool = False,
    keep_tags: bool = True,
    persistent: bool = True,
) -> fo.Dataset:
    """Export an audit result to a persistent FiftyOne dataset.

    Parameters
    ----------
    result
        An :class:`~imgaudit.result.AuditResult`.
    name
        Dataset name; default :func:`default_name` (from the dataset root).
    overwrite
        Replace an existing dataset of that name. Without it, an existing name raises
        ``ValueError`` so that a reviewer's work is never replaced by accident.
    keep_tags
        On overwrite, carry the reviewer's work over to the new export: every sample tag
        that is not an ``issue:`` tag (``remove``, ``keep``, ``relabel``, ...) and every
        corrected ``ground_truth`` label, matched by image path. ``False`` starts fresh.
    persistent
        Keep the dataset in the database after this process exits.

    Returns
    -------
    fiftyone.core.dataset.Dataset
        The new dataset (built under a temporary name and renamed only when complete,
        so a failed export leaves the old one intact).

    Example
    -------
    >>> ds = result.to_fiftyone("pets-audit")                   # doctest: +SKIP
    >>> ds.load_saved_view("near_duplicates").first().filepath  # doctest: +SKIP
    """
    fo = _fo()
    from ..result import jsonable

    name = name or default_name(result)
    exists = fo.dataset_exists(name)
    if exists and not overwrite:
        raise ValueError(
            f"FiftyOne dataset {name!r} already exists (it may hold a reviewer's work); "
            "pass overwrite=True to replace it (reviewer tags and corrected labels are "
            "kept unless keep_tags=False) or choose another name"
        )
    carried: dict[str, tuple[list[str], str | None]] = {}
    if exists and keep_tags:
        carried = _reviewer_state(fo.load_dataset(name))

    samples, counts, dups = _build_samples(result)
    tmp_name = f"{name}.imgaudit-tmp-{os.getpid()}-{time.monotonic_ns()}"
    ds = fo.Dataset(tmp_name)
    try:
        ds.add_samples(samples, progress=False)
        if carried:
            _apply_reviewer_state(ds, carried)
        views = _save_views(ds, counts, dups)
        summary = getattr(result, "summary", None)
        ds.info[INFO_KEY] = jsonable(
            {
                "root": str(Path(str(result.root)).absolute()),
                "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "fingerprint": _fingerprint(result),
                "issue_counts": counts,
                "views": views,
                "summary": [] if summary is None else summary.to_dict(orient="records"),
                "recommendations": getattr(result, "recommendations", {}) or {},
                "config": getattr(result, "config", {}) or {},
            }
        )
        ds.save()
        if exists:
            fo.delete_dataset(name)
        ds.name = name
        ds.persistent = persistent
    except BaseException:
        if fo.dataset_exists(tmp_name):
            fo.delete_dataset(tmp_name)
        raise
    logger.info("exported %d samples to FiftyOne dataset %r", len(samples), name)
    return ds


def _apply_reviewer_state(ds: Any, carried: dict[str, tuple[list[str], str | None]]) -> None:
    fo = _fo()
    present = set(ds.values(PATH_FIELD))
    lost = sorted(p for p in carried if p not in present)
    if lost:
        warnings.warn(
            f"{len(lost)} reviewed image(s) are no longer in the audit result; their "
            f"review decisions were dropped (first: {lost[:3]})",
            stacklevel=3,
        )
    view = ds.select_by(PATH_FIELD, [p for p in carried if p in present])
    for sample in view.iter_samples(autosave=True):
        tags, corrected = carried[sample[PATH_FIELD]]
        sample.tags = list(dict.fromkeys([*sample.tags, *tags]))
        if corrected is not None:
            sample[GT_FIELD] = fo.Classification(label=corrected)
    logger.info("carried reviewer decisions of %d images over", len(carried) - len(lost))


# ---------------------------------------------------------------------------- review
def read_review(dataset: str | fo.Dataset) -> pd.DataFrame:
    """The reviewer's decisions in a dataset exported by :func:`to_fiftyone`.

    Parameters
    ----------
    dataset
        A dataset name or a loaded ``fo.Dataset``.

    Returns
    -------
    pandas.DataFrame
        Indexed by image path (relative to the dataset root, like ``result.issues``), one
        row per image the reviewer decided on, with columns ``decision`` (``"remove"``,
        ``"relabel"`` or ``"keep"``), ``label`` (the corrected ``ground_truth`` label, or
        ``None`` when a ``relabel`` tag asks for the suggestion), ``original_label`` and
        ``tags`` (the reviewer's tags, comma-separated). When tags conflict, ``remove``
        wins over ``relabel`` (a corrected label also counts as relabel) over ``keep``.

    Example
    -------
    >>> read_review("pets-audit").decision.value_counts()   # doctest: +SKIP
    """
    fo = _fo()
    ds = fo.load_dataset(dataset) if isinstance(dataset, str) else dataset
    if not ds.has_sample_field(PATH_FIELD):
        raise ValueError(f"dataset {ds.name!r} was not exported by imgaudit (no {PATH_FIELD!r})")
    rows = []
    for path, (tags, corrected) in _reviewer_state(ds).items():
        review = [t for t in tags if t in REVIEW_TAGS]
        if "remove" in review:
            decision = "remove"
            if len(set(review)) > 1 or corrected is not None:
                logger.warning("%s: conflicting review %s; 'remove' wins", path, review)
        elif corrected is not None or "relabel" in review:
            decision = "relabel"
        elif "keep" in review:
            decision = "keep"
        else:
            continue
        rows.append(
            {"path": path, "decision": decision, "label": corrected, "tags": ",".join(tags)}
        )
    # object dtype keeps ``None`` for "no corrected label" (pandas would infer str + NaN)
    out = pd.DataFrame(rows, columns=["path", "decision", "label", "tags"], dtype=object)
    out = out.set_index("path")
    if len(out):
        given = dict(zip(ds.values(PATH_FIELD), ds.values(LABEL_FIELD), strict=True))
        out.insert(
            2,
            "original_label",
            pd.Series([given.get(p) for p in out.index], index=out.index, dtype=object),
        )
    else:
        out.insert(2, "original_label", pd.Series(dtype=object))
    return out


def _port_in_use(address: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError:
            return True
    return False


def _fiftyone_answers(address: str, port: int) -> bool:
    import requests

    try:
        return "version" in requests.get(f"http://{address}:{port}/fiftyone", timeout=2).json()
    except Exception:  # anything else listening there is not a FiftyOne server
        return False


class ReviewApp:
    """A running FiftyOne App serving an exported audit; close it to stop its server.

    Made by :func:`launch_review`; a context manager. ``url`` is where the App is served.
    """

    def __init__(self, session: Any, dataset_name: str, url: str) -> None:
        self.session = session
        self.dataset_name = dataset_name
        self.url = url
        self._procs = self._server_processes()
        self._closed = False

    def _server_processes(self) -> list[Any]:
        """The App server's process tree (FiftyOne starts it in its own process group)."""
        import psutil

        try:
            from fiftyone.core.session import session as fosess

            service = fosess._server_services.get(self.session.server_port)
        except (ImportError, AttributeError):  # a FiftyOne without this registry
            service = None
        child = getattr(service, "child", None)
        if child is None:  # the App attached to a server some other process runs
            return []
        try:
            proc = psutil.Process(child.pid)
            return [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    @property
    def server_pids(self) -> list[int]:
        """Process ids of the App server this process started (empty if it attached)."""
        return [p.pid for p in self._procs]

    def alive(self) -> bool:
        """Whether the App server this process started is still running."""
        return any(p.is_running() and p.status() != "zombie" for p in self._procs)

    def wait(self, poll: float = 0.5) -> None:
        """Block until Ctrl-C (``KeyboardInterrupt``) or until the App server dies."""
        while True:
            time.sleep(poll)
            if self._procs and not self.alive():
                raise RuntimeError(f"the FiftyOne App server for {self.url} stopped unexpectedly")

    def close(self, timeout: float = 15.0) -> None:
        """Stop the App and its server process tree; no process is left behind."""
        if self._closed:
            return
        self._closed = True
        import psutil

        fo = _fo()
        groups = set()
        for p in self._procs:
            try:
                groups.add(os.getpgid(p.pid))
            except ProcessLookupError:
                pass
        # never signal our own process group (the App server normally has its own)
        groups.discard(os.getpgid(0))
        try:
            if fo.core.session.session._session is self.session:
                fo.close_app()
            else:
                self.session.close()
        finally:
            _, alive = psutil.wait_procs(self._procs, timeout=timeout)
            for p in alive:
                logger.warning("App server process %d still running; terminating it", p.pid)
                p.terminate()
            _, alive = psutil.wait_procs(alive, timeout=5)
            for p in alive:
                p.kill()
            for pgid in groups:
                # FiftyOne's service wrapper kills its children when we close its stdin;
                # anything still in its process group is an orphan of ours: end it
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    try:
                        os.killpg(pgid, sig)
                    except ProcessLookupError:
                        break
                    time.sleep(1.0)
        logger.info("FiftyOne App at %s stopped", self.url)

    def __enter__(self) -> ReviewApp:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _resolve_dataset(result_or_path: Any, name: str | None) -> Any:
    """The dataset to review: export ``result_or_path`` if there is no current export."""
    fo = _fo()
    if isinstance(result_or_path, fo.core.collections.SampleCollection):
        return result_or_path
    result = result_or_path
    if isinstance(result_or_path, (str, Path)):
        if not Path(result_or_path).exists() and fo.dataset_exists(str(result_or_path)):
            return fo.load_dataset(str(result_or_path))
        from ..result import AuditResult

        result = AuditResult.load(result_or_path)
    name = name or default_name(result)
    if not fo.dataset_exists(name):
        return to_fiftyone(result, name=name)
    ds = fo.load_dataset(name)
    if ds.info.get(INFO_KEY, {}).get("fingerprint") == _fingerprint(result):
        logger.info("reviewing the existing export %r (reviewer's work kept)", name)
        return ds
    logger.info("re-exporting %r: the result changed (reviewer's work carried over)", name)
    return to_fiftyone(result, name=name, overwrite=True, keep_tags=True)


def launch_review(
    result_or_path: Any,
    port: int = 5151,
    address: str = "127.0.0.1",
    name: str | None = None,
) -> ReviewApp:
    """Export if needed and start the FiftyOne App on ``address:port``; does not block.

    Parameters are those of :func:`review`. Close the returned :class:`ReviewApp` (or
    use it as a context manager) to stop the App server.
    """
    fo = _fo()
    ds = _resolve_dataset(result_or_path, name)
    if _port_in_use(address, port) and not _fiftyone_answers(address, port):
        raise OSError(f"port {port} on {address} is in use by another program; choose another port")
    session = fo.launch_app(ds, remote=True, address=address, port=port)
    host = "localhost" if address in ("0.0.0.0", "::") else address
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{session.server_port}/"
    logger.info("FiftyOne App serving dataset %r at %s", ds.name, url)
    return ReviewApp(session, ds.name, url)


def review(
    result_or_path: Any,
    port: int = 5151,
    address: str = "127.0.0.1",
    name: str | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> str:
    """Review an audit in the FiftyOne App until Ctrl-C; return the dataset name.

    Parameters
    ----------
    result_or_path
        An :class:`~imgaudit.result.AuditResult`, the directory it was saved to, the name
        of an exported dataset, or a FiftyOne dataset.
    port, address
        Where the App listens. The default binds to this machine only; use
        ``address="0.0.0.0"`` to expose it on the network (no authentication!).
    name
        Dataset name for the export; default :func:`default_name`. An existing export of
        the same result is reused; one of an older result is re-exported with the
        reviewer's tags and corrected labels carried over.
    on_ready
        Called with the App's URL once it is serving (the CLI prints it).

    Returns
    -------
    str
        The dataset name, to pass to ``clean_labels(..., dataset=name)``.

    Notes
    -----
    Ctrl-C (or SIGTERM) stops the App and its server process group before returning.

    Example
    -------
    >>> name = review(result, on_ready=print)   # doctest: +SKIP
    >>> result.clean_labels("cleaned.csv", dataset=name)  # doctest: +SKIP
    """
    app = launch_review(result_or_path, port=port, address=address, name=name)
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def _interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        # Ctrl-C must work even when SIGINT arrives ignored (a process started in the
        # background by a non-interactive shell inherits SIG_IGN), and a plain `kill`
        # should clean up like Ctrl-C does
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _interrupt)
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)
    try:
        if on_ready is not None:
            on_ready(app.url)
        app.wait()
    except KeyboardInterrupt:
        logger.info("interrupted: stopping the FiftyOne App")
    finally:
        if previous:
            # a second Ctrl-C must not abandon the server half-stopped; close() is bounded
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            app.close()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return app.dataset_name


__all__ = [
    "REVIEW_TAGS",
    "ReviewApp",
    "default_name",
    "launch_review",
    "read_review",
    "review",
    "to_fiftyone",
]
