"""Atomic writes shared by every writer: masks, NIfTI predictions, checkpoints, logs, figures, stores.

    with atomic_write(path, suffix=".nii.gz") as tmp:
        nib.save(img, tmp)

The data goes to a hidden temporary file (or folder) beside the destination, which is renamed over
it with :func:`os.replace` only once complete, so an interrupted or failed write never leaves a torn
file. Before the rename the temporary gets the mode any other tool would create: ``0o666 & ~umask``
for files, ``0o777 & ~umask`` for folders (``tempfile`` makes them private, 0600 / 0700, which would
keep colleagues on a shared server from reading the outputs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write", "atomic_dir", "default_mode"]


def _umask() -> int:
    # Linux shows the umask without changing it; os.umask can only be read by setting it, which
    # would briefly change the mode of files other threads create.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def default_mode(directory: bool = False) -> int:
    """The mode a new file (or folder) gets under the current umask."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextmanager
def atomic_write(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success it replaces ``path``, else it is removed.

    ``suffix`` is the temporary's ending, for writers that pick the format by name (``.nii.gz``, ``.png``).
    """
    dest = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # After the writer: it may have replaced the file rather than written into it.
        os.chmod(tmp, default_mode())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; on success it is renamed to ``path``, else deleted."""
    dest = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, default_mode(directory=True))
        os.replace(tmp, dest)  # the folder appears complete or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
