"""AuditResult: summary, save/load round trip, issue selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from imgaudit import AuditResult
from imgaudit.columns import issue_col, score_col
from imgaudit.result import jsonable


def _result() -> AuditResult:
    idx = pd.Index(["a/1.png", "a/2.png", "b/caf\u00e9 \udcff.png"], name="path")
    issues = pd.DataFrame(
        {
            "label": ["a", "a", "b"],
            "split": [None, None, None],
            issue_col("dark"): [True, False, False],
            score_col("dark"): [0.1, 0.9, 1.0],
            issue_col("blurry"): [False, True, True],
            score_col("blurry"): [0.8, 0.3, 0.2],
        },
        index=idx,
    )
    info = {"dark": {"threshold": np.float32(0.5), "hist": np.arange(3), "pairs": {("a", "b"): 1}}}
    return AuditResult(issues, info=info, recommendations={"code": "x"}, config={"size": 64}, root="/data")


def test_summary_counts():
    r = _result()
    s = r.summary.set_index("issue_type")
    assert s.loc["dark", "num_issues"] == 1
    assert s.loc["blurry", "num_issues"] == 2
    assert s.loc["blurry", "score"] == pytest.approx(np.mean([0.8, 0.3, 0.2]))
    assert r.num_issues == 3


def test_get_issues_sorted_worst_first():
    r = _result()
    got = r.get_issues("blurry")
    assert list(got.index) == ["b/caf\u00e9 \udcff.png", "a/2.png"]
    with pytest.raises(KeyError, match="available"):
        r.get_issues("nope")


def test_info_is_json_normalised():
    r = _result()
    assert r.info["dark"]["hist"] == [0, 1, 2]
    assert isinstance(r.info["dark"]["threshold"], float)
    assert list(r.info["dark"]["pairs"]) == ["('a', 'b')"]
    assert jsonable(float("nan")) is None


def test_save_load_round_trip(tmp_path):
    r = _result()
    out = r.save(tmp_path / "res")
    back = AuditResult.load(out)
    pdt.assert_frame_equal(back.issues, r.issues)
    pdt.assert_frame_equal(back.summary, r.summary)
    assert back.info == r.info
    assert back.recommendations == r.recommendations
    assert back.config == r.config
    assert back.root == r.root
    assert back.issue_types == r.issue_types
    assert not list(out.glob("*.tmp"))


def test_load_rejects_non_result(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved imgaudit result"):
        AuditResult.load(tmp_path)
