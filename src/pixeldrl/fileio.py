"""Atomic writes shared by every writer: masks, NIfTI predictions, checkpoints, logs, figures, stores.

    with atomic_write(path, suffix=".nii.gz") as tmp:
        nib.save(img, tmp)

The data goes to a hidden temporary file (or folder) beside the destination, which is renamed over
it with :func:`os.replace` only once complete, so an interrupted or failed write never leaves a torn
file. Before the rename the temporary gets the mode any other tool would create: ``0o666 & ~umask``
for files, ``0o777 & ~umask`` for folders (``tempfile`` makes them private, 0600 / 0700, which would
keep colleagues on a shared server from reading the outputs). An OS error while writing (disk full,
permission denied, a file-size limit) propagates as :class:`OSError` naming the destination; the
temporary is removed and the previous file, if any, is untouched.

:func:`folder_lock` keeps two processes from writing into one folder (a run folder, see
``training/run.py``).
"""

from __future__ import annotations

import csv
import errno
import fcntl
import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pixeldrl.errors import InputError

__all__ = ["atomic_write", "atomic_dir", "write_csv", "printable", "clear_abandoned", "is_unfinished", "default_mode", "folder_lock", "LOCK_NAME",
           "os_error_message"]

LOCK_NAME = ".pixeldrl.lock"


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
    except OSError as e:
        tmp.unlink(missing_ok=True)
        # Writers report the temporary's name, or none (torch, numpy): name the file the user asked for.
        raise OSError(e.errno, e.strerror or str(e), str(dest)) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; on success it is renamed to ``path``, else deleted.

    While it is being filled the temporary folder holds a lock (``flock`` on its ``.pixeldrl.lock``),
    so a folder left behind by a writer killed with SIGKILL is recognisable: nobody holds its lock.
    :func:`clear_abandoned` removes those; the next ``atomic_dir`` of the same ``path`` calls it.
    """
    dest = Path(path)
    clear_abandoned(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    lock = tmp / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield tmp
        os.chmod(tmp, default_mode(directory=True))
        lock.unlink()  # a finished folder carries no lock file (still held through fd until the rename)
        os.replace(tmp, dest)  # the folder appears complete or not at all
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(e.errno, e.strerror or str(e), e.filename or str(dest)) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def is_unfinished(folder: str | os.PathLike) -> bool:
    """True for a temporary folder of :func:`atomic_dir` (finished or abandoned): it holds a lock file."""
    return (Path(folder) / LOCK_NAME).exists() and Path(folder).name.endswith(".tmp")


def clear_abandoned(dest: str | os.PathLike, grace_s: float = 60.0) -> list[Path]:
    """Delete the temporary folders of ``dest`` (``.NAME.*.tmp`` beside it) whose writer is gone.

    A writer holds its folder's lock until it finishes; the kernel drops the lock when the writer
    dies, so an unlocked lock file means an abandoned folder. A folder without a lock file (its
    writer was killed between creating the folder and locking it) counts as abandoned after
    ``grace_s`` seconds. Folders of a live writer are left alone. Returns what was removed.
    """
    dest = Path(dest)
    removed = []
    for old in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
        if not old.is_dir() or old.is_symlink():
            continue
        try:
            fd = os.open(old / LOCK_NAME, os.O_RDWR)
        except FileNotFoundError:
            if time.time() - old.stat().st_mtime > grace_s:
                shutil.rmtree(old, ignore_errors=True)
                removed.append(old)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer
        else:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
        finally:
            os.close(fd)
    return removed


def os_error_message(e: OSError) -> str:
    """One line for an OS error: the file, then what the system said (``No space left on device``)."""
    what = e.strerror or " ".join(str(e).split()) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        what += "; files already there are unchanged"
    name = e.filename if e.filename is not None else ""
    name = os.fsdecode(name) if isinstance(name, bytes) else str(name)
    if e.filename2 is not None:
        name += f" -> {os.fsdecode(e.filename2) if isinstance(e.filename2, bytes) else e.filename2}"
    return f"{name}: {what}" if name else what


@contextmanager
def folder_lock(folder: str | os.PathLike, option: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` for the block; InputError when another process holds it.

    The lock is ``flock`` on ``folder/.pixeldrl.lock``, which also records the holder's pid for the
    message. The kernel drops an flock when its holder exits, however it exits (``kill -9``
    included), so a lock file left by a dead process is simply taken over: there are no stale
    locks to clean up. The file itself stays (deleting a lock file others may have opened would
    let two processes each lock a different file).
    """
    path = Path(folder) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, default_mode())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise InputError(f"{option} {folder}: in use by another pixeldrl process (pid {holder}); "
                             f"wait for it to finish or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


def write_csv(path: str | os.PathLike, fieldnames: list[str], rows) -> Path:
    """Write a CSV table atomically (a crash never leaves half a table).

    File names that are not valid UTF-8 (Python holds their bytes as surrogate escapes) are written
    back as the same bytes, so a name in the table matches the file on disk.
    """
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def printable(name: str) -> str:
    """A file name for display (figure titles, terminal): undecodable bytes shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
