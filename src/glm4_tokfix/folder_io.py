"""Atomic folder writes, used by both export routes (``model_folder`` and ``minimal_patch``).

``Transaction`` stages files under temporary names in one folder and moves them all into place with
``os.replace``; if any step fails, the steps already taken are undone, so the folder is left exactly as it was.
``check_writable`` tries for real whether a file can be created; ``existing_folder`` checks a folder argument.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import List, Optional, Union

__all__ = ["PathLike", "Transaction", "check_writable", "existing_folder"]

PathLike = Union[str, "os.PathLike[str]"]


def existing_folder(folder: PathLike) -> Path:
    """``folder`` as a Path; ``FileNotFoundError`` when it does not exist, ``NotADirectoryError`` when it is a file."""
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path))
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(path))
    return path


def _temp_path(folder: Path, name: str) -> Path:
    return folder / f".{name}.glm4-tokfix-{uuid.uuid4().hex[:12]}.tmp"


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _clone(source: Path, dest: Path) -> None:
    """Make ``dest`` the same file as ``source`` (hard link; else an exact copy, symlinks as symlinks)."""
    try:
        os.link(source, dest, follow_symlinks=False)
        return
    except OSError:
        pass
    if os.path.islink(source):
        os.symlink(os.readlink(source), dest)
    else:
        shutil.copy2(source, dest)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_writable(folder: Path) -> None:
    """Raise ``PermissionError`` unless a file can be created in ``folder``.

    Tried for real (``os.access`` says yes to root even on a folder it may not
    write, and no to nothing on a read-only mount it can still stat).
    """
    probe = _temp_path(folder, "write-probe")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise PermissionError(exc.errno, f"folder is not writable ({exc.strerror})", str(folder)) from None
    os.close(fd)
    os.unlink(probe)


class Transaction:
    """Stage files under temporary names in one folder, then move them all into place; undo on failure."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._ops: List[tuple] = []  # (target name, staged temp path, or None to remove the target)
        self._temps: List[Path] = []

    def write(self, name: str, data: bytes, mode: Optional[int] = None) -> None:
        tmp = _temp_path(self.folder, name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._temps.append(tmp)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _default_mode() if mode is None else mode)
        self._ops.append((name, tmp))

    def copy(self, name: str, source: str) -> None:
        """Make ``name`` the same file as ``source`` (an entry of the folder)."""
        tmp = _temp_path(self.folder, name)
        _clone(self.folder / source, tmp)
        self._temps.append(tmp)
        self._ops.append((name, tmp))

    def remove(self, name: str) -> None:
        self._ops.append((name, None))

    def commit(self) -> None:
        done: List[tuple] = []
        try:
            for name, tmp in self._ops:
                target = self.folder / name
                saved = None
                if os.path.lexists(target):
                    saved = _temp_path(self.folder, name + ".undo")
                    _clone(target, saved)
                    self._temps.append(saved)
                if tmp is None:
                    if os.path.lexists(target):
                        os.unlink(target)
                else:
                    os.replace(tmp, target)
                done.append((target, saved))
            _fsync_dir(self.folder)
        except BaseException:
            for target, saved in reversed(done):
                try:
                    if saved is not None:
                        os.replace(saved, target)
                    elif os.path.lexists(target):
                        os.unlink(target)
                except OSError:
                    pass
            raise
        finally:
            self.discard()

    def discard(self) -> None:
        for tmp in self._temps:
            try:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
            except OSError:
                pass
        self._temps = []
