"""The FiftyOne App serves an exported audit: headless Chromium loads it and sees samples.

`imgaudit.export.fiftyone.review` runs in its own process group (as `imgaudit review`
would in a terminal), bound to 127.0.0.1; Chromium dumps the DOM and takes a
screenshot (kept under ``test-artifacts/``); Ctrl-C (SIGINT to the group) stops the App,
and no process the test started, nor any process in their groups, is left running.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ["FIFTYONE_DATABASE_DIR"] = os.path.join(
    tempfile.gettempdir(), f"imgaudit-test-fiftyone-db-{os.getuid()}"
)
os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from test_export_csv import PATHS, make_result  # noqa: E402

from imgaudit.export.fiftyone import to_fiftyone  # noqa: E402

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,900",
    # virtual time lets the page's timers run ahead; the App needs ~10 s of them to
    # fetch samples over its GraphQL API and paint the grid's canvases
    "--virtual-time-budget=25000",
]
SERVE = r"""
import sys
from imgaudit.export.fiftyone import review

name = review(sys.argv[1], port=int(sys.argv[2]),
              on_ready=lambda url: print("URL " + url, flush=True))
print("STOPPED " + name, flush=True)
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group exists (owned by someone else)
        return True
    # a group made only of zombies (exited, not yet reaped by its parent) is not running
    members = [p for p in psutil.process_iter(["pid"]) if _pgid(p.pid) == pgid]
    return any(_running(p) for p in members)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _run_chromium(chromium: str, args: list[str], profile: Path, groups: set[int]) -> str:
    proc = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, to prove nothing outlives it
    )
    groups.add(proc.pid)
    try:
        out, _ = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, f"chromium exited with {proc.returncode}"
    return out


def _grid_stats(png: Path) -> tuple[int, float]:
    """Distinct colours in the grid area and the share of its most common colour."""
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[:2] == (900, 1400)
    grid = img[150:420, 320:1350].reshape(-1, 3)
    codes = np.ravel_multi_index(grid.T, (256, 256, 256))
    counts = np.bincount(codes)
    return int((counts > 0).sum()), float(counts.max() / len(grid))


def test_app_renders_exported_samples(tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'; CI installs it)")
    import fiftyone as fo

    result = make_result(tmp_path / "data")
    name = f"imgaudit-test-browser-{uuid.uuid4().hex[:8]}"
    # exporting here also starts the database in this process, so the App process
    # attaches to it rather than owning it
    to_fiftyone(result, name=name)
    port = _free_port()
    groups: set[int] = set()
    server_pids: list[int] = []
    log = tmp_path / "review.log"
    app = subprocess.Popen(
        [sys.executable, "-c", SERVE, name, str(port)],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        start_new_session=True,  # like a terminal job: Ctrl-C goes to this whole group
    )
    groups.add(app.pid)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in app.stdout], daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 240
        while url is None and time.monotonic() < deadline and app.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith("URL "):
                url = line.split()[1]
        assert url == f"http://127.0.0.1:{port}/", log.read_text()[-3000:]
        for child in psutil.Process(app.pid).children(recursive=True):
            server_pids.append(child.pid)
            groups.add(os.getpgid(child.pid))
        assert server_pids, "the App server process was not started by the review process"
        # bound to localhost only: the port is not served on the machine's other addresses
        listening = {
            (c.laddr.ip, c.laddr.port)
            for pid in server_pids
            for c in psutil.Process(pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        }
        assert ("127.0.0.1", port) in listening and ("0.0.0.0", port) not in listening

        # The App fetches samples over its API after the page loads; on a busy machine
        # that can outrun Chromium's virtual-time budget, so load again (fresh profile)
        # until the grid has rendered, a bounded number of times.
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "app.png"
        for attempt in range(4):
            dom = _run_chromium(
                chromium, ["--dump-dom", url], tmp_path / f"profile-dom-{attempt}", groups
            )
            if dom.count('canvas-loaded="true"') == len(PATHS) - 1:
                break
        # the DOM: one grid cell ("looker") per sample, an image painted into every
        # readable one, and FiftyOne's error tile for the unreadable file
        assert dom.count('data-cy="looker"') == len(PATHS), dom[-2000:]
        assert dom.count('canvas-loaded="true"') == len(PATHS) - 1
        assert dom.count("lookerErrorPage") == 1
        assert dom.count('data-cy="tag-ground_truth"') == len(PATHS)
        assert name in dom

        for attempt in range(4):
            shot.unlink(missing_ok=True)
            _run_chromium(
                chromium,
                [f"--screenshot={shot}", url],
                tmp_path / f"profile-shot-{attempt}",
                groups,
            )
            colours, background = _grid_stats(shot)
            if colours > 2000 and background < 0.5:
                break
        # the pixels: the grid area is covered by the colourful test images, which
        # an empty grid (one flat background colour) is not
        assert colours > 2000, f"grid looks empty: {colours} colours"
        assert background < 0.5, f"{background:.0%} of the grid is one colour"
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGINT)  # Ctrl-C in the terminal
        try:
            rc = app.wait(timeout=90)
        except subprocess.TimeoutExpired:
            rc = None
        reader.join(timeout=5)
        leftovers = {g for g in groups if _group_alive(g)}
        alive = [p for p in server_pids if psutil.pid_exists(p) and _running(psutil.Process(p))]
        for g in leftovers:  # clean up before failing, never leave them behind
            os.killpg(g, signal.SIGKILL)
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
    assert rc == 0, log.read_text()[-3000:]
    assert any(x.startswith("STOPPED") for x in list(lines.queue))
    assert not alive, f"App server processes still running: {alive}"
    assert not leftovers, f"process groups still running: {leftovers}"
