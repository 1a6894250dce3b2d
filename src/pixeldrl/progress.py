"""Progress bars on long work (tqdm), the same rule for every command.

A bar shows only when it is wanted (``progress=True`` from the caller), the command was not given
``--quiet`` (:func:`set_quiet`), and stderr is a terminal: logs of batch jobs and pipes get no
carriage-return noise.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """``--quiet``: no progress bars anywhere in this process."""
    global _QUIET
    _QUIET = bool(quiet)


def bar(iterable=None, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, shown only under the module docstring's rule."""
    show = enabled and not _QUIET and sys.stderr.isatty()
    return tqdm(iterable, disable=not show, **kwargs)
