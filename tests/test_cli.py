"""The ``imgaudit`` command line: exit codes, ``--json``, usage errors, subcommands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from imgaudit.cli import main
from imgaudit.result import AuditResult

#: quick checks for CLI plumbing tests (no training)
FAST_CHECKS = "unreadable,low_resolution,dark"


def fast_audit(root: Path, out: Path, *extra: str) -> list[str]:
    """``imgaudit audit`` arguments for a quick run of FAST_CHECKS at 64 px, no report."""
    return ["audit", str(root), "--out", str(out), "--checks", FAST_CHECKS, "--size", "64",
            "--no-report", *extra]  # fmt: skip


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter, stdout/stderr captured (not a TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "imgaudit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imgaudit.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("cli") / "digits")


@pytest.fixture()
def clean_dir(tmp_path: Path) -> Path:
    """A tiny dataset with nothing wrong for the fast checks."""
    root = tmp_path / "clean"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (80, 80), (200, 40 * i, 90 if c == "a" else 160)).save(
                root / c / f"{i}.png"
            )
    return root


# -- help and usage ----------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", [[], ["audit"], ["report"], ["review"], ["clean"]])
def test_help_has_examples(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "imgaudit " in out
    assert "exit codes:" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required"),
        (["audit"], "PATH"),
        (["audit", "/no/such/dataset"], "no such file or folder"),
        (["audit", ".", "--checks", "bogus"], "unknown check"),
        (["audit", ".", "--option", "near_duplicates"], "CHECK.PARAM=VALUE"),
        (["audit", ".", "--checks", "dark", "-o", "dark.no_such_param=1"], "unknown option"),
        (["audit", ".", "--fail-on", "bogus"], "unknown issue type"),
        (["audit", ".", "--size", "0"], "size"),
        (["audit", ".", "--mode", "slow"], "invalid choice"),
        (["audit", ".", "--labels", "/no/such.csv"], "no such file"),
        (["report", "/no/such/result"], "not a result folder"),
        (["clean", "/no/such/result", "--out", "x.csv"], "not a result folder"),
        (["clean", "."], "--out"),
        (["review", "/no/such/thing"], "no such result or dataset"),
    ],
)
def test_usage_errors_exit_2_with_one_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_bad_input_in_subprocess_no_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("report", str(empty))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    r = run_cli("audit", str(empty), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no images found" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("audit", str(tmp_path / "missing"), "--json")
    assert r.returncode == 2
    assert json.loads(r.stdout)["exit_code"] == 2


# -- audit: exit codes and --json --------------------------------------------------------------
def test_audit_clean_dataset_exits_0(clean_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    code = main(
        ["audit", str(clean_dir), "--out", str(out), "--checks", FAST_CHECKS, "--size", "64", "-q"]
    )
    assert code == 0
    r = AuditResult.load(out)
    assert int(r.summary["num_issues"].sum()) == 0
    assert (out / "report.html").is_file()


def test_audit_issues_exit_1_and_json(demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "res"
    r = run_cli(
        "audit",
        str(demo_root),
        "--out",
        str(out),
        "--checks",
        FAST_CHECKS,
        "--size",
        "64",
        "--json",
    )
    assert r.returncode == 1, r.stderr
    payload = json.loads(r.stdout)  # stdout is JSON only
    saved = AuditResult.load(out)
    assert payload["images"] == len(saved.issues)
    assert payload["issues"] == dict(
        zip(saved.summary["issue_type"], saved.summary["num_issues"].astype(int), strict=True)
    )
    assert payload["issues"]["unreadable"] >= 1  # the demo plants a corrupt file
    assert payload["exit_code"] == 1 and "unreadable" in payload["failing_issue_types"]
    assert payload["result"] == str(out) and Path(payload["report"]).is_file()
    # not a TTY: no progress bars in the captured output
    assert "it/s" not in r.stderr and "%|" not in r.stderr


@pytest.mark.parametrize(
    "fail_on, expected", [("dark", 0), ("none", 0), ("unreadable", 1), ("any", 1)]
)
def test_fail_on_chooses_issue_types(
    demo_root: Path, tmp_path: Path, fail_on: str, expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(fast_audit(demo_root, tmp_path / "r", "--fail-on", fail_on, "--json"))
    payload = json.loads(capsys.readouterr().out)
    assert payload["issues"]["dark"] == 0  # the digits are dark ink on white paper
    assert code == expected == payload["exit_code"]
    assert not (tmp_path / "r" / "report.html").exists()


def test_audit_prints_summary_table(
    demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(fast_audit(demo_root, tmp_path / "r"))
    out = capsys.readouterr().out
    assert "issue type" in out and "unreadable" in out and "low_resolution" in out
    assert f"result: {tmp_path / 'r'}" in out


def test_quiet_prints_nothing(
    demo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "audit",
            str(demo_root),
            "--out",
            str(tmp_path / "r"),
            "--checks",
            "unreadable",
            "--no-report",
            "-q",
        ]
    )
    assert code == 1
    assert capsys.readouterr().out == ""


def test_labels_csv_and_check_options(
    tmp_path: Path, clean_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(p.relative_to(clean_dir).as_posix() for p in clean_dir.rglob("*.png"))
    csv = tmp_path / "labels.csv"
    pd.DataFrame({"fname": files, "label": [f.split("/")[0] for f in files]}).to_csv(
        csv, index=False
    )
    code = main(
        [
            "audit",
            str(clean_dir),
            "--labels",
            str(csv),
            "--out",
            str(tmp_path / "r"),
            "--checks",
            "low_resolution",
            "--size",
            "100",
            "--no-report",
            "--json",
        ]
    )
    payload = json.loads(capsys.readouterr().out)
    assert code == 1 and payload["issues"]["low_resolution"] == len(files)  # 80 px < 100 px
    assert payload["classes"] == 2


# -- report and clean --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "res"
    assert main(fast_audit(demo_root, out, "-q")) == 1
    return out


def test_report_subcommand(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "rep.html"
    assert main(["report", str(saved), "--out", str(html), "--max-per-gallery", "5", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["report"] == str(html) and html.is_file()
    assert "unreadable" in html.read_text(encoding="utf-8")
    assert main(["report", str(saved), "--max-per-gallery", "0"]) == 2


def test_clean_subcommand(saved: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "cleaned.csv"
    code = main(["clean", str(saved), "--out", str(csv), "--label-issues", "keep", "--json"])
    assert code == 0, capsys.readouterr().err
    payload = json.loads(capsys.readouterr().out)
    table = pd.read_csv(csv)
    assert payload["rows_written"] == len(table)
    assert list(table.columns[:3]) == ["fname", "label", "is_valid"]
    # the corrupt demo file is dropped by the default policy
    unreadable = AuditResult.load(saved).get_issues("unreadable").index
    assert len(unreadable) and not set(unreadable) & set(table["fname"])
    assert Path(payload["changes"]).is_file()


def test_console_script_installed() -> None:
    exe = Path(sys.executable).with_name("imgaudit")
    if not exe.exists():
        pytest.skip("package not installed with its console script in this environment")
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("imgaudit ")


def test_internal_error_exit_3_hint_debug(
    clean_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import imgaudit.api

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(imgaudit.api, "audit", broken)
    assert main(["audit", str(clean_dir), "--out", str(tmp_path / "r")]) == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "boom" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["audit", str(clean_dir), "--out", str(tmp_path / "r"), "--debug"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_review_prints_url_and_stops_on_ctrl_c(saved: Path, tmp_path: Path) -> None:
    import signal
    import time
    import urllib.request

    port = _free_port()
    env = {
        **os.environ,
        "FIFTYONE_DATABASE_DIR": str(tmp_path / "fo-db"),
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_DO_NOT_TRACK": "true",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imgaudit.cli",
            "review",
            str(saved),
            "--port",
            str(port),
            "--dataset",
            "cli-review-test",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = None
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        # the first line on stdout is ours (FiftyOne's own advice goes to stderr)
        line = proc.stdout.readline()
        if line.startswith("FiftyOne App: "):
            url = line.split()[2]
        assert time.monotonic() < deadline
        assert url == f"http://127.0.0.1:{port}/", (
            url,
            proc.stderr.read() if proc.poll() is not None else "",
        )
        with urllib.request.urlopen(url, timeout=30) as resp:  # the App answers
            assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "cli-review-test" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run_on_tty(args: list[str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (120 columns); return (code, stderr)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgaudit.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    buf = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        buf += chunk
    os.close(master)
    return proc.wait(timeout=300), buf.decode("utf-8", "replace")


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bars_on_a_terminal_only(demo_root: Path, tmp_path: Path, quiet: bool) -> None:
    args = ["audit", str(demo_root), "--out", str(tmp_path / "r"), "--checks", "unreadable"]
    args += ["--no-report", "--no-cache"] + (["-q"] if quiet else [])
    code, err = _run_on_tty(args)
    assert code == 1
    # a finished bar: "decoding images: 100%|...| N/N"
    finished = re.search(r"decoding images: 100%.*?\b(\d+)/\1\b", err) is not None
    assert finished is not quiet, err[-500:]
