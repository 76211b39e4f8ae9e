"""The check registry: one explicit literal, no discovery by file name.

To add a check: write its class in a module of this package and add one line to
``_ALL`` (and to ``DEFAULT_CHECKS`` if it should run by default).
"""

from __future__ import annotations

from .base import Check, SkipCheck
from .duplicates import DUPLICATE_CHECKS
from .labels import LABEL_CHECKS
from .properties import PROPERTY_CHECKS
from .rotation import RotationCheck

_ALL: list[type[Check]] = [
    *PROPERTY_CHECKS,
    *DUPLICATE_CHECKS,
    *LABEL_CHECKS,  # after duplicates: folds keep duplicate groups together
    RotationCheck,  # keep last: the probe reuses the label stage's fold models
]


def _build_registry(classes: list[type[Check]]) -> dict[str, type[Check]]:
    registry: dict[str, type[Check]] = {}
    for cls in classes:
        if cls.name in registry:
            raise RuntimeError(f"check name {cls.name!r} registered twice")
        registry[cls.name] = cls
    return registry


CHECKS: dict[str, type[Check]] = _build_registry(_ALL)

#: run when ``checks=None``; order matters (duplicates before labels: folds are
#: duplicate-aware; labels before rotation: the probe reuses the fold models)
DEFAULT_CHECKS: tuple[str, ...] = tuple(c.name for c in _ALL)

__all__ = ["CHECKS", "DEFAULT_CHECKS", "Check", "SkipCheck"]
