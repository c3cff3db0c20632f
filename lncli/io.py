"""Output files: checked before any work, then written atomically.

Checking. Every command calls :func:`check_output_file` / :func:`check_output_dir`
on each path it will write, and :func:`check_distinct` on all of them together,
*before* it loads or computes anything: a folder where a file goes (or a file
where a folder goes), a parent that is not a writable folder, a read-only file,
a wrong suffix, or two outputs (or an output and an input) that are one file are
refused with one :class:`~lncli.errors.OutputError` line. The checks only look:
they create nothing (missing parent folders are created later, by the writer).

Writing. Every file lncli writes (checkpoints, CSV/JSON, plots, images) goes
through :func:`atomic_write` or :func:`atomic_path`: the data goes to a temporary
file in the destination folder, is flushed and fsynced, then ``os.replace``-d
over the target, which POSIX guarantees is atomic on one filesystem. An
interrupted or failed write leaves the previous file (if any) intact, no
partial or temporary file behind, and no parent folder that it created; an
``OSError`` becomes an :class:`~lncli.errors.OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from lncli.errors import OutputError

__all__ = [
    "atomic_path",
    "atomic_write",
    "check_distinct",
    "check_output_dir",
    "check_output_file",
    "image_suffixes",
    "same_file",
]


# --------------------------------------------------------------------------- checks


def image_suffixes() -> tuple[str, ...]:
    """Return the image suffixes matplotlib's Agg backend writes (``.png``, ``.pdf``, ``.svg``, ...).

    Returns:
        Lower-case suffixes with their dot, sorted.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return tuple(sorted(f".{ext}" for ext in FigureCanvasAgg.get_supported_filetypes()))


def _may(path: Path, mode: int) -> bool:
    # os.access asks the kernel without creating a probe file (which could be left behind).
    # It answers True for root on a read-write filesystem whatever the mode bits say,
    # which is also what a write would do.
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def _check_parent(target: Path, option: str) -> None:
    """The nearest existing ancestor of ``target`` must be a writable folder (missing ones get created)."""
    # lexists is False (not an error) for a path through a file; a relative path ends at ".".
    parent = next((p for p in target.parents if os.path.lexists(p)), Path(target.anchor or "."))
    if not parent.is_dir():
        raise OutputError(f"{option} {target}: {parent} is a file, not a folder")
    if not _may(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {target}: cannot write into {parent} (no permission or read-only)")


def check_output_file(path: str | os.PathLike[str], option: str, suffixes: Sequence[str] | None = None) -> Path:
    """Refuse, in one line, an output file path that cannot be written. Creates nothing.

    Call it before any long work, so that a bad path costs nothing.

    Args:
        path: where the file will be written (parent folders may be missing).
        option: how the user gave it (``"--csv"``, ``"OUT"``), for the message.
        suffixes: accepted lower-case suffixes with their dot (``(".csv",)``; ``""`` accepts a
            name without a suffix); None accepts any. Compared case-insensitively.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: wrong suffix, an existing folder, a read-only file, or a parent
            that is a file or a folder we may not write into.
    """
    target = Path(path)
    if target.is_dir():  # first: "is a folder" says more than "no suffix"
        raise OutputError(f"{option} {path} is a folder; give a file path")
    if suffixes is not None and target.suffix.lower() not in suffixes:
        named = [x for x in suffixes if x]
        want = named[0] if len(named) == 1 else f"one of {', '.join(named)}"
        want += " (or have no suffix)" if "" in suffixes else ""
        if not target.suffix:
            raise OutputError(f"{option} {path} has no suffix; it must end in {want}")
        raise OutputError(
            f"{option} {path}: cannot write '{target.suffix.lstrip('.')}' files; the suffix must be {want}"
        )
    if target.exists() and not _may(target, os.W_OK):
        raise OutputError(f"{option} {path} exists and is read-only")
    _check_parent(target, option)
    return target


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """Refuse, in one line, an output folder that cannot be written. Creates nothing.

    Args:
        path: the folder (it may not exist yet; then its nearest existing ancestor is checked).
        option: how the user gave it (``"--out"``), for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputError: the path is a file, or a folder (or ancestor) we may not write into.
    """
    target = Path(path)
    if not os.path.lexists(target):
        _check_parent(target, option)
    elif not target.is_dir():
        raise OutputError(f"{option} {path} is a file, not a folder")
    elif not _may(target, os.W_OK | os.X_OK):
        raise OutputError(f"{option} {path}: cannot write into this folder (no permission or read-only)")
    return target


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: equal once resolved, or hard links / bind mounts of one file.

    Args:
        a: a path (it need not exist).
        b: another path (it need not exist).

    Returns:
        True when writing ``b`` would replace ``a``.
    """
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        return os.path.samefile(pa, pb)
    except OSError:  # one of them does not exist: they are different files
        return False


def check_distinct(
    outputs: Mapping[str, str | os.PathLike[str] | None],
    inputs: Mapping[str, str | os.PathLike[str] | None] | None = None,
) -> None:
    """Refuse two outputs of one run that are one file, and an output that is one of the inputs.

    Args:
        outputs: ``{option: path}`` of everything the run writes (None entries are skipped).
        inputs: ``{option: path}`` of files the run reads and must not replace.

    Raises:
        OutputError: naming both options and the path.
    """
    outs = [(opt, p) for opt, p in outputs.items() if p is not None]
    for opt, out in outs:
        for in_opt, inp in (inputs or {}).items():
            if inp is not None and same_file(inp, out):
                raise OutputError(
                    f"{opt} {out} is the input {in_opt} {inp}; refusing to overwrite it, choose another path"
                )
    for i, (opt_a, a) in enumerate(outs):
        for opt_b, b in outs[i + 1 :]:
            if same_file(a, b):
                raise OutputError(f"{opt_a} {a} and {opt_b} {b} are the same file; give them different paths")


# --------------------------------------------------------------------------- atomic writers


def _make_parents(target: Path, created: list[Path]) -> None:
    """Create the missing parent folders of ``target``, appending each one made to ``created`` (outermost first)."""
    missing = []
    for parent in target.parents:
        if parent.is_dir():
            break
        missing.append(parent)
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if folder.is_dir():  # made meanwhile by a concurrent writer: not ours to remove
                continue
            raise
        created.append(folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``.

    Use this for writers that want a filename (``torch.save``, ``savefig``,
    ``PIL.Image.save``, ``numpy.save``). On any exception the temporary file and
    the parent folders this call created are removed and ``path`` is untouched.

    Args:
        path: the final destination. Its parent folder is created if needed.

    Yields:
        A temporary path in the same folder, with the same suffix (so that
        libraries that infer the format from the suffix still work).

    Raises:
        OutputError: any ``OSError`` while writing (no space, no permission, a
            folder in the way), naming ``path`` and the reason.
    """
    target = Path(path)
    created: list[Path] = []
    tmp: Path | None = None
    try:
        _make_parents(target, created)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        # fsync so that a crash after the rename cannot expose an empty file.
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        for folder in reversed(created):
            with contextlib.suppress(OSError):  # not empty: a concurrent writer uses it
                folder.rmdir()
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
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

    Raises:
        OutputError: any ``OSError`` while writing (see :func:`atomic_path`).
    """
    if "b" not in mode:
        open_kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:  # type: ignore[call-overload]
        yield fh
