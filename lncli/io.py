"""Atomic file writes: a reader never sees a half-written file.

Every file lncli writes (checkpoints, CSV/JSON, plots, images) goes through
:func:`atomic_write` or :func:`atomic_path`: the data goes to a temporary file in
the destination folder, is flushed and fsynced, then ``os.replace``-d over the
target, which POSIX guarantees is atomic on one filesystem. An interrupted write
leaves the previous file (if any) intact and no partial file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``.

    Use this for writers that want a filename (``torch.save``, ``savefig``,
    ``PIL.Image.save``, ``numpy.save``). On any exception the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: the final destination. Its parent folder is created if needed.

    Yields:
        A temporary path in the same folder, with the same suffix (so that
        libraries that infer the format from the suffix still work).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        # fsync so that a crash after the rename cannot expose an empty file.
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **open_kwargs: object) -> Iterator[IO]:
    """Open a file for writing that appears at ``path`` only once fully written.

    Args:
        path: the final destination.
        mode: ``"w"`` (text, UTF-8 by default) or ``"wb"``.
        **open_kwargs: passed to :func:`open` (e.g. ``newline=""`` for csv).

    Yields:
        An open file object.
    """
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:  # type: ignore[call-overload]
            yield fh
