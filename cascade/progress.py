"""Progress bars that draw on a terminal and stay quiet in a log file.

Every bar in cascade goes through :func:`progress_bar`: ``enabled=False`` turns it off, and
``enabled=True`` still leaves it off when stderr is not a terminal (tqdm's ``disable=None``), so
`make demo > demo.log` or a Kubernetes job's log holds the summary lines, not thousands of
carriage-return redraws. ``CASCADE_PROGRESS=1`` forces bars on (``0`` forces them off).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
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


@contextlib.contextmanager
def library_bars_quiet() -> Iterator[None]:
    """Silence bars a library draws with no way to turn them off (Feast's ``materialize`` builds
    ``tqdm(total=..., ncols=100)`` itself) when :func:`bars_disabled` says bars are off here: its
    stderr goes to /dev/null for the call. Loggers keep the stream they were configured with."""
    disabled = bars_disabled()
    if disabled is False or (disabled is None and sys.stderr is not None and sys.stderr.isatty()):
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        yield
