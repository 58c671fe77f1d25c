"""The web dashboard and the static HTML report of an experiment (`paretune dashboard`, `paretune report`).

`write_static_report(db, experiment, url) -> str` writes the experiment page as one file. The
web stack is imported on first use, so `paretune` commands that do not need it start fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["write_static_report"]


def __getattr__(name: str) -> Any:
    if name == "write_static_report":
        from paretune.dashboard.static_report import write_static_report

        return write_static_report
    raise AttributeError(f"module 'paretune.dashboard' has no attribute {name!r}")
