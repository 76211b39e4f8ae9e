"""The two helpers that name result columns. Never write these names by hand."""

from __future__ import annotations


def issue_col(check: str) -> str:
    """``is_<check>_issue``: bool, True where the check flags the image."""
    return f"is_{check}_issue"


def score_col(check: str) -> str:
    """``<check>_score``: float in [0, 1], lower means worse."""
    return f"{check}_score"


def extra_col(check: str, extra: str) -> str:
    """``<check>_<extra>``: an optional per-image extra of a check."""
    return f"{check}_{extra}"
