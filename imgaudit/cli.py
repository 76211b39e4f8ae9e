"""The ``imgaudit`` command line: ``audit | report | review | clean``.

Exit codes (every subcommand):

- 0: success, and (``audit``) no image flagged by the issue types ``--fail-on`` counts;
- 1: (``audit``) issues found;
- 2: bad input or usage (bad options, a dataset that cannot be loaded, a missing or
  unwritable file): one clear message on stderr, no traceback;
- 3: an internal error (a bug): rerun with ``--debug`` for the traceback;
- 130: interrupted.

Printing happens here only; the library logs and warns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ISSUES, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_EXIT_HELP = """\
exit codes:
  0  no issues (of the types --fail-on counts)     1  issues found
  2  bad input or usage                            3  internal error (rerun with --debug)
"""


class UsageError(Exception):
    """Bad input or usage: printed as one message, exit code 2."""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; appends real defaults (not None/False) to help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            default is not None
            and default is not False
            and default != argparse.SUPPRESS
            and action.option_strings
            and "%(default)" not in text
            and "default" not in text
        ):
            text += " (default: %(default)s)"
        return text


def _out(args: argparse.Namespace, text: str = "") -> None:
    """Human-readable output: silenced by ``--quiet`` and replaced by ``--json``."""
    if not args.quiet and not args.json:
        print(text)


def _emit_json(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))


def _progress(args: argparse.Namespace) -> bool:
    # Progress bars only for a person watching: not with --quiet/--json, not in pipes/CI logs.
    return not args.quiet and not args.json and sys.stderr.isatty()


# --------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------
def _split_list(values: Sequence[str] | None) -> list[str] | None:
    """``--checks a,b c`` -> ``["a", "b", "c"]``."""
    if values is None:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out


def _parse_value(text: str) -> Any:
    """A check option value: JSON (numbers, booleans, lists) else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_options(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    opts: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        check, dot, param = key.partition(".")
        if not sep or not dot or not check or not param:
            raise UsageError(f"--option expects CHECK.PARAM=VALUE, got {item!r}")
        opts.setdefault(check.strip(), {})[param.strip()] = _parse_value(value.strip())
    return opts


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument(
        "--json", action="store_true", help="print a machine-readable JSON summary on stdout"
    )
    g.add_argument(
        "-q", "--quiet", action="store_true", help="print nothing but errors; no progress bars"
    )
    g.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv: debug)")
    g.add_argument("--debug", action="store_true", help="show the traceback of internal errors")


def _audit_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("audit options")
    g.add_argument(
        "--labels",
        metavar="CSV",
        help="label CSV (fname,label[,is_valid|split]) for an image folder",
    )
    g.add_argument(
        "--root",
        metavar="DIR",
        help="folder the CSV paths are relative to (default: the CSV's folder)",
    )
    g.add_argument("--size", type=int, default=224, help="input size you train at (short side, px)")
    g.add_argument(
        "--checks",
        nargs="+",
        metavar="CHECK",
        help="run only these checks (names, comma or space separated)",
    )
    g.add_argument("--skip", nargs="+", metavar="CHECK", help="run the default checks except these")
    g.add_argument(
        "--mode",
        choices=("fast", "finetune"),
        default="fast",
        help="out-of-fold predictions: frozen features + linear heads (fast) or fastai fine-tuning",
    )
    g.add_argument(
        "--folds", type=int, default=5, help="number of folds for out-of-fold predictions"
    )
    g.add_argument("--epochs", type=int, default=3, help="epochs per fold (finetune mode)")
    g.add_argument("--arch", default="resnet18", help="backbone for out-of-fold predictions")
    g.add_argument("--workers", type=int, metavar="N", help="worker processes (default: all cores)")
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="cache of decoded images, hashes, thumbnails, predictions",
    )
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    g.add_argument("--seed", type=int, default=0, help="seed for folds, training and sampling")
    g.add_argument(
        "--option",
        "-o",
        action="append",
        metavar="CHECK.PARAM=VALUE",
        help="a check hyperparameter, e.g. near_duplicates.radius=10 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``imgaudit`` argument parser (exposed for docs and tests)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="imgaudit",
        formatter_class=_Formatter,
        description="Audit an image-classification dataset before you train on it: broken "
        "files, duplicates and leaks, label issues, rotation sensitivity.",
        epilog="examples:\n"
        "  imgaudit audit data/pets --out pets_audit\n"
        "  imgaudit report pets_audit --out pets_report.html\n"
        "  imgaudit review pets_audit\n"
        "  imgaudit clean pets_audit --out data/pets/cleaned.csv\n\n" + _EXIT_HELP,
    )
    parser.add_argument("--version", action="version", version=f"imgaudit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # audit -----------------------------------------------------------------------------
    p = sub.add_parser(
        "audit",
        formatter_class=_Formatter,
        help="audit a dataset, save the result and an HTML report",
        description="Audit a dataset (class folders, train/valid split folders, a fastai-style "
        "label CSV, or an unlabeled folder), save the result to --out, write its HTML report "
        "and print a summary table.",
        epilog="examples:\n"
        "  imgaudit audit data/pets\n"
        "  imgaudit audit data/pets --out pets_audit --size 192 --mode finetune\n"
        "  imgaudit audit data/images --labels data/labels.csv\n"
        "  imgaudit audit data/pets --checks unreadable,exact_duplicates,near_duplicates\n"
        "  imgaudit audit data/pets -o near_duplicates.radius=10 --fail-on unreadable,label --json\n\n"
        + _EXIT_HELP,
    )
    p.add_argument("path", metavar="PATH", help="dataset folder, or a label CSV")
    p.add_argument("--out", metavar="DIR", default="imgaudit_out", help="where to save the result")
    p.add_argument("--no-report", action="store_true", help="do not write DIR/report.html")
    p.add_argument(
        "--fail-on",
        metavar="TYPES",
        default="any",
        help="issue types that make the exit code 1: 'any', 'none', or a comma list "
        "(e.g. unreadable,exact_duplicates,label)",
    )
    _audit_options(p)
    _common(p)
    p.set_defaults(func=cmd_audit)

    # report ----------------------------------------------------------------------------
    p = sub.add_parser(
        "report",
        formatter_class=_Formatter,
        help="write the self-contained HTML report of a saved result",
        description="Write one self-contained HTML file (no network access needed to open it) "
        "from a result saved by `imgaudit audit`.",
        epilog="examples:\n"
        "  imgaudit report imgaudit_out\n"
        "  imgaudit report pets_audit --out pets.html --max-per-gallery 100\n\n" + _EXIT_HELP,
    )
    p.add_argument("result", metavar="RESULT", help="a result folder written by `imgaudit audit`")
    p.add_argument(
        "--out", metavar="FILE", help="the HTML file to write (default: RESULT/report.html)"
    )
    p.add_argument(
        "--max-per-gallery",
        type=int,
        default=40,
        metavar="N",
        help="most images shown per issue type (counts stay complete)",
    )
    _common(p)
    p.set_defaults(func=cmd_report)

    # review ----------------------------------------------------------------------------
    p = sub.add_parser(
        "review",
        formatter_class=_Formatter,
        help="open the findings in the FiftyOne App to review and tag them",
        description="Export a saved result (or audit a dataset folder first) to a persistent "
        "FiftyOne dataset and serve the App with the issue views. Tag samples there, then "
        "`imgaudit clean RESULT --dataset NAME` honours your tags.",
        epilog="examples:\n"
        "  imgaudit review imgaudit_out\n"
        "  imgaudit review pets_audit --port 5152 --address 0.0.0.0\n"
        "  imgaudit review data/pets          # audits first, with the default options\n\n"
        + _EXIT_HELP,
    )
    p.add_argument(
        "target", metavar="RESULT_OR_PATH", help="a saved result folder or a dataset folder"
    )
    p.add_argument("--port", type=int, default=5151, help="App port")
    p.add_argument("--address", default="127.0.0.1", help="App address to bind")
    p.add_argument(
        "--dataset",
        metavar="NAME",
        help="FiftyOne dataset name (default: derived from the dataset root)",
    )
    _audit_options(p)
    _common(p)
    p.set_defaults(func=cmd_review)

    # clean -----------------------------------------------------------------------------
    p = sub.add_parser(
        "clean",
        formatter_class=_Formatter,
        help="write a cleaned label CSV for fastai",
        description="Write a label CSV (fname,label,is_valid) that fastai's "
        "ImageDataLoaders.from_csv reads, dropping unreadable files and duplicates and "
        "fixing or dropping label issues according to the policy options.",
        epilog="examples:\n"
        "  imgaudit clean imgaudit_out --out cleaned.csv\n"
        "  imgaudit clean pets_audit --out cleaned.csv --label-issues relabel --relabel-threshold 0.8\n"
        "  imgaudit clean pets_audit --out cleaned.csv --dataset pets   # honour App tags\n\n"
        + _EXIT_HELP,
    )
    p.add_argument("result", metavar="RESULT", help="a result folder written by `imgaudit audit`")
    p.add_argument("--out", metavar="CSV", required=True, help="the cleaned CSV to write")
    p.add_argument("--dataset", metavar="NAME", help="FiftyOne dataset whose review tags to honour")
    _clean_policy_options(p)
    _common(p)
    p.set_defaults(func=cmd_clean)
    return parser


def _clean_policy_options(p: argparse.ArgumentParser) -> None:
    # Defaults live in imgaudit.export.csv.CleanPolicy; options not given are not passed.
    g = p.add_argument_group("policy (default: the library's CleanPolicy)")
    g.add_argument("--unreadable", choices=("drop", "keep"), help="unreadable files (default drop)")
    g.add_argument(
        "--duplicates",
        choices=("keep_one", "keep"),
        help="exact/near-duplicate groups: keep only the group's keep image, or all (default keep_one)",
    )
    g.add_argument(
        "--split-leaks",
        choices=("drop", "keep"),
        help="validation/test images duplicating an earlier split (default drop)",
    )
    g.add_argument(
        "--label-issues",
        choices=("drop", "relabel", "keep"),
        help="images with a label issue (default drop)",
    )
    g.add_argument(
        "--relabel-threshold",
        type=float,
        metavar="P",
        help="minimum suggested-label confidence for --label-issues relabel (default 0.9)",
    )
    g.add_argument(
        "--valid-pct",
        type=float,
        metavar="F",
        help="without a source split: share of images marked is_valid (default 0.2)",
    )
    g.add_argument("--seed", type=int, help="seed of that split (default 0)")
    g.add_argument(
        "--changes",
        metavar="CSV",
        help="where to write the change log (default: changes.csv beside --out)",
    )


# --------------------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------------------
def _known_issue_types() -> set[str]:
    from .checks import CHECKS

    return {t for cls in CHECKS.values() for t in cls.issue_types()}


def _parse_fail_on(text: str) -> list[str] | None:
    """``None`` = any issue type counts; ``[]`` = none does."""
    t = text.strip().lower()
    if t in ("any", "all", ""):
        return None
    if t == "none":
        return []
    names = _split_list([text]) or []
    unknown = sorted(set(names) - _known_issue_types())
    if unknown:
        raise UsageError(
            f"--fail-on: unknown issue type(s) {unknown}; known: {sorted(_known_issue_types())}"
        )
    return names


def _audit_config_options(args: argparse.Namespace) -> dict[str, Any]:
    from .checks import CHECKS, DEFAULT_CHECKS

    checks = _split_list(args.checks)
    skip = _split_list(args.skip)
    if checks is not None and skip is not None:
        raise UsageError("give --checks or --skip, not both")
    for flag, names in (("--checks", checks), ("--skip", skip)):
        unknown = sorted(set(names or []) - set(CHECKS))
        if unknown:
            raise UsageError(f"{flag}: unknown check(s) {unknown}; available: {sorted(CHECKS)}")
    if skip is not None:
        checks = [c for c in DEFAULT_CHECKS if c not in set(skip)]
    check_options = _parse_options(args.option)
    run = set(checks) if checks is not None else set(DEFAULT_CHECKS)
    for name, params in check_options.items():
        if name not in CHECKS:
            raise UsageError(f"--option: unknown check {name!r}; available: {sorted(CHECKS)}")
        if name not in run:
            raise UsageError(f"--option given for check {name!r}, which is not run")
        try:
            CHECKS[name](**params)  # validates the parameter names now, not after the decode pass
        except (TypeError, ValueError) as err:
            raise UsageError(f"--option: {err}") from None
    if args.no_cache and args.cache_dir:
        raise UsageError("give --cache-dir or --no-cache, not both")
    options: dict[str, Any] = dict(
        size=args.size,
        checks=checks,
        check_options=check_options,
        label_mode=args.mode,
        n_folds=args.folds,
        epochs=args.epochs,
        arch=args.arch,
        num_workers=args.workers,
        seed=args.seed,
        progress=_progress(args),
        cache_dir=False if args.no_cache else args.cache_dir,
    )
    from .config import AuditConfig

    try:
        AuditConfig.from_options(**options)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from None
    return options


def _run_audit(args: argparse.Namespace) -> Any:
    from .api import audit

    options = _audit_config_options(args)
    path = Path(args.path if hasattr(args, "path") else args.target)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    labels = args.labels
    if labels is not None and not Path(labels).is_file():
        raise UsageError(f"--labels {labels}: no such file")
    from .imageset import load_images

    # Loading the sources is where bad input shows (empty folder, unreadable CSV, unknown
    # columns): its ValueErrors are the user's to fix. A ValueError raised later, by a
    # check, is a bug and is reported as one (exit 3).
    try:
        imageset = load_images(path, labels=labels, root=args.root)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return audit(imageset, **options)


def _summary_payload(result: Any, fail_on: list[str] | None) -> dict[str, Any]:
    from .columns import issue_col

    df = result.issues
    summary = result.summary
    counts = {
        str(t): int(n) for t, n in zip(summary["issue_type"], summary["num_issues"], strict=True)
    }
    cols = [issue_col(t) for t in counts if issue_col(t) in df.columns]
    flagged = int(df[cols].fillna(False).astype(bool).any(axis=1).sum()) if cols else 0
    counted = counts if fail_on is None else {t: counts.get(t, 0) for t in fail_on}
    failing = sorted(t for t, n in counted.items() if n > 0)
    labels = df["label"] if "label" in df.columns else None
    from .export.report import skipped_checks

    skipped = skipped_checks(result.info)
    return {
        "images": len(df),
        "classes": int(labels.nunique()) if labels is not None else 0,
        "flagged_images": flagged,
        "issues": counts,
        "skipped_checks": skipped,
        "root": str(result.root),
        "fail_on": "any" if fail_on is None else fail_on,
        "failing_issue_types": failing,
        "exit_code": EXIT_ISSUES if failing else EXIT_OK,
    }


def _print_table(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    n = payload["images"]
    share = 100.0 * payload["flagged_images"] / n if n else 0.0
    _out(
        args,
        f"imgaudit: {n:,} images, {payload['classes']} classes under {payload['root']}; "
        f"{payload['flagged_images']:,} flagged ({share:.1f}%)",
    )
    if payload["issues"]:
        width = max(12, *(len(t) for t in payload["issues"]))
        _out(args, f"  {'issue type':<{width}}  {'images':>8}  {'share':>6}")
        for t, c in payload["issues"].items():
            mark = " *" if t in payload["failing_issue_types"] else ""
            _out(args, f"  {t:<{width}}  {c:>8,}  {100.0 * c / n if n else 0:>5.1f}%{mark}")
    for t, why in payload["skipped_checks"].items():
        _out(args, f"  skipped {t}: {why}")


def cmd_audit(args: argparse.Namespace) -> int:
    fail_on = _parse_fail_on(args.fail_on)
    result = _run_audit(args)
    out = Path(args.out)
    result.save(out)
    payload = _summary_payload(result, fail_on)
    payload["result"] = str(out)
    if not args.no_report:
        from .export.report import write_report

        payload["report"] = str(write_report(result, out / "report.html"))
    _print_table(args, payload)
    _out(
        args, f"result: {out}" + (f"   report: {payload['report']}" if "report" in payload else "")
    )
    _out(args, f"next:   imgaudit review {out}    imgaudit clean {out} --out cleaned.csv")
    _emit_json(args, payload)
    return int(payload["exit_code"])


def _load_result(path: str) -> Any:
    from .result import AuditResult

    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{p}: not a result folder (run `imgaudit audit DATASET --out {p}` first)")
    try:
        return AuditResult.load(p)
    except (FileNotFoundError, ValueError) as err:  # not a result, or an unsupported version
        raise UsageError(str(err)) from None


def cmd_report(args: argparse.Namespace) -> int:
    from .export.report import write_report

    if args.max_per_gallery < 1:
        raise UsageError("--max-per-gallery must be at least 1")
    result = _load_result(args.result)
    out = Path(args.out) if args.out else Path(args.result) / "report.html"
    path = write_report(result, out, max_per_gallery=args.max_per_gallery)
    _out(args, f"report: {path}")
    _emit_json(args, {"report": str(path), "images": len(result.issues), "exit_code": EXIT_OK})
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from .export.fiftyone import review

    target = Path(args.target)
    source: Any
    if (target / "meta.json").is_file():
        source = _load_result(args.target)
    elif target.exists():
        _out(args, f"{target} is not a saved result: auditing it first")
        source = _run_audit(args)
    else:
        raise UsageError(f"{target}: no such result or dataset folder")

    stdout = sys.stdout

    def ready(url: str) -> None:
        with contextlib.redirect_stdout(stdout):
            _out(args, f"FiftyOne App: {url}   (Ctrl-C to stop)")
            _emit_json(args, {"url": url, "exit_code": EXIT_OK})
            sys.stdout.flush()

    # FiftyOne prints its own remote-session advice on stdout: send it to stderr so that
    # our stdout stays the URL line (or pure JSON with --json).
    with contextlib.redirect_stdout(sys.stderr):
        try:
            name = review(
                source, port=args.port, address=args.address, name=args.dataset, on_ready=ready
            )
        except ValueError as err:  # e.g. a dataset name that belongs to another export
            raise UsageError(str(err)) from None
    _out(
        args,
        f"reviewed dataset {name!r}; next: imgaudit clean {args.target} --out cleaned.csv "
        f"--dataset {name}",
    )
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    from .export.csv import clean_labels

    result = _load_result(args.result)
    policy: dict[str, Any] = {
        k: getattr(args, k)
        for k in (
            "unreadable",
            "duplicates",
            "split_leaks",
            "label_issues",
            "relabel_threshold",
            "valid_pct",
            "seed",
        )
        if getattr(args, k) is not None
    }
    if args.dataset:
        policy["dataset"] = args.dataset
    if args.changes:
        policy["changes_csv"] = args.changes
    try:
        table = clean_labels(result, args.out, **policy)
    except ValueError as err:  # a policy value or review dataset the user gave
        raise UsageError(str(err)) from None
    out = Path(args.out)
    changes = Path(args.changes) if args.changes else out.with_name("changes.csv")
    n_in = len(result.issues)
    payload: dict[str, Any] = {
        "csv": str(out),
        "changes": str(changes),
        "images_in": n_in,
        "rows_written": len(table),
        "dropped": n_in - len(table),
        "valid_rows": int(table["is_valid"].sum()) if "is_valid" in table.columns else None,
        "exit_code": EXIT_OK,
    }
    _out(
        args, f"cleaned labels: {out} ({len(table):,} of {n_in:,} images kept; changes: {changes})"
    )
    _out(
        args,
        f"train:  ImageDataLoaders.from_csv({str(result.root)!r}, {str(out.resolve())!r}, "
        f"item_tfms=Resize({int(result.config.get('size') or 224)}))",
    )
    _emit_json(args, payload)
    return EXIT_OK


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------
def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    text = str(message)
    text = text[len("imgaudit: ") :] if text.startswith("imgaudit: ") else text
    return f"imgaudit: warning: {text}\n"


def _fail(args: argparse.Namespace | None, code: int, message: str) -> int:
    print(f"imgaudit: error: {message}", file=sys.stderr)
    if args is not None and getattr(args, "json", False):
        print(json.dumps({"error": message, "exit_code": code}))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``imgaudit`` command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help/--version (0) or a usage error (2)
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    level = logging.WARNING - 10 * min(args.verbose, 2)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        # libraries that set their own logger to INFO (FiftyOne) must not get past -v
        root.handlers[0].setLevel(level)
    # Library warnings are for the user: one readable line each, not file:line + source.
    # (Restored afterwards: main() is also called in-process, by tests and scripts.)
    saved_format = warnings.formatwarning
    warnings.formatwarning = _format_warning  # type: ignore[assignment]
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            return _dispatch(args)
    finally:
        warnings.formatwarning = saved_format


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except UsageError as err:
        return _fail(args, EXIT_USAGE, str(err))
    except OSError as err:
        # missing or unwritable files and folders, a port in use: the user's to fix
        if args.debug:
            raise
        return _fail(args, EXIT_USAGE, str(err) or type(err).__name__)
    except KeyboardInterrupt:
        return _fail(args, EXIT_INTERRUPTED, "interrupted")
    except Exception as err:  # a bug: say so, and how to get the traceback
        if args.debug:
            raise
        return _fail(
            args,
            EXIT_INTERNAL,
            f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)",
        )


if __name__ == "__main__":
    sys.exit(main())
