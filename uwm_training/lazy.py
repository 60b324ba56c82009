"""Lazy package exports (PEP 562), so light commands never pay for torch.

``uwm policy`` and ``uwm --help`` import the command modules of every package; a package whose
``__init__`` imported its torch-heavy modules would load torch into the policy process.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names[attr]`` (a submodule) on first access."""

    def __getattr__(attr: str) -> Any:
        if attr not in names:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(names[attr], package), attr)

    return __getattr__
