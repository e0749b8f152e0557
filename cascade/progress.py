"""Progress bars that draw on a terminal and stay quiet in a log file.

Every bar in cascade goes through :func:`progress_bar`: ``enabled=False`` turns it off, and
``enabled=True`` still leaves it off when stderr is not a terminal (tqdm's ``disable=None``), so
`make demo > demo.log` or a Kubernetes job's log holds the summary lines, not thousands of
carriage-return redraws. ``CASCADE_PROGRESS=1`` forces bars on (``0`` forces them off).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

PROGRESS_ENV = "CASCADE_PROGRESS"


def bars_disabled(enabled: bool = True) -> bool | None:
    """tqdm's ``disable`` for a bar the caller wants (``enabled``): None means "only on a TTY"."""
    forced = os.environ.get(PROGRESS_ENV, "").strip()
    if not enabled or forced == "0":
        return True
    if forced == "1":
        return False
    return None


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any) -> Any:
    """A ``tqdm.auto.tqdm`` bar that draws on a terminal only (other keywords go to tqdm)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=bars_disabled(enabled), **kwargs)
