"""imgaudit: audit an image classification dataset before you train on it."""

from __future__ import annotations

from .api import audit
from .config import AuditConfig
from .imageset import ImageSet, load_images
from .result import AuditResult

__version__ = "0.1.0"

__all__ = ["AuditConfig", "AuditResult", "ImageSet", "__version__", "audit", "load_images"]
