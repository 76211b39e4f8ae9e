"""One contract test over every registered check (DESIGN.md rule 7)."""

from __future__ import annotations

import pandas as pd
import pytest

import imgaudit
from imgaudit.checks import CHECKS, DEFAULT_CHECKS, Check, SkipCheck, _build_registry
from imgaudit.columns import extra_col, issue_col, score_col
from imgaudit.demo import make_demo_dataset


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory):
    root = make_demo_dataset(tmp_path_factory.mktemp("contract") / "demo", n_per_class=12)
    result = imgaudit.audit(root, size=64, n_folds=3, progress=False)
    return root, result


def test_registry_is_consistent():
    assert list(DEFAULT_CHECKS) == [n for n in DEFAULT_CHECKS if n in CHECKS]
    for name, cls in CHECKS.items():
        assert cls.name == name
        assert issubclass(cls, Check)


def test_registering_a_name_twice_raises():
    cls = next(iter(CHECKS.values()))
    with pytest.raises(RuntimeError, match="registered twice"):
        _build_registry([cls, cls])


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_unknown_hyperparameter_raises(name):
    with pytest.raises(TypeError, match="unknown option"):
        CHECKS[name](definitely_not_an_option=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check_contract(name, demo_result):
    root, result = demo_result
    issues = result.issues
    expected_paths = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() == ".png"
    )
    assert sorted(issues.index) == expected_paths
    assert issues.index.is_unique
    cls = CHECKS[name]
    if "skipped" in result.info.get(name, {}):
        pytest.skip(f"{name} skipped on the demo data: {result.info[name]['skipped']}")
    for n in cls.issue_types():
        ic, sc = issue_col(n), score_col(n)
        assert issues[ic].dtype == bool, ic
        assert pd.api.types.is_float_dtype(issues[sc]), sc
        scores = issues[sc].dropna()
        assert ((scores >= 0) & (scores <= 1)).all(), sc
        assert n in set(result.summary["issue_type"])
    own = [c for c in issues.columns if c.startswith(f"{name}_") or c == issue_col(name)]
    assert own, f"{name} wrote no columns"
    assert extra_col(name, "x") == f"{name}_x"


def test_unknown_check_and_option_raise(tmp_path):
    root = make_demo_dataset(tmp_path / "d", n_per_class=2)
    with pytest.raises(ValueError, match="unknown check"):
        imgaudit.audit(root, checks=["nope"])
    with pytest.raises(TypeError, match="unknown audit option"):
        imgaudit.audit(root, sizee=3)


def test_skipcheck_is_exception():
    assert issubclass(SkipCheck, Exception)
