"""The local durable spool: where heartbeats and error records wait while the database is down.

One append-only JSON-lines file per stream (`heartbeats.jsonl`, `errors.jsonl`) in SPOOL_DIR,
shared by every worker process on the host. Writers append one line under an exclusive
`flock` and fsync before answering. The replayer renames the file away (new appends start a
new file), takes the lock on the renamed file, so no writer is still mid-append, and reads it.
A writer that opened the old name just before the rename notices, after locking, that the
name no longer points at its file, and reopens.

An append is all or nothing: a short write, a full disk (ENOSPC) or a failed fsync truncates
the file back to where the line began and raises SpoolFull, so no half line is ever left
behind an answer. The size cap counts every file of the stream (the current one and those
renamed away for a replay that has not finished).
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)


class SpoolFull(Exception):
    """The spool cannot take the record: it reached its size limit, or the disk refused it."""


# Room a spool must have left to count as able to take a heartbeat (/health): a bodyless
# heartbeat's line is a few hundred bytes, and disks hand out space in blocks of 4 KiB.
MIN_ROOM_BYTES = 4096
# What a lesser stream (error records) leaves free on the disk for heartbeats.
HEARTBEAT_RESERVE_BYTES = 1024 * 1024


class Spool:
    """An append-only, fsync'd, multi-process-safe queue of JSON records on local disk."""

    def __init__(self, directory: str, stream: str, max_bytes: int = 512 * 1024 * 1024,
                 keep_free_bytes: int = 0):
        self.directory = Path(directory)
        self.stream = stream
        self.path = self.directory / f"{stream}.jsonl"
        self.max_bytes = max_bytes
        # Refuse appends that would leave less than this free on the disk (for a stream that
        # must not take the last bytes another one needs).
        self.keep_free_bytes = keep_free_bytes

    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            _fsync_directory(self.directory.parent)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably: when this returns, it survives a crash.

        Raises SpoolFull, with nothing of the record left in the file, when the cap or the
        disk cannot take it whole.
        """
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            self._ensure_directory()
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    if not _same_file(fd, self.path):
                        continue  # renamed away for replay between our open and our lock
                    size = os.fstat(fd).st_size
                    held = size + self._claimed_bytes()
                    if held + len(line) > self.max_bytes:
                        raise SpoolFull(f"{self.stream} spool holds {held} bytes")
                    if self.keep_free_bytes and _free_bytes(self.directory) - len(line) \
                            < self.keep_free_bytes:
                        raise SpoolFull(f"{self.stream} spool leaves the disk's last "
                                        f"{self.keep_free_bytes} bytes to others")
                    # A torn line (its writer was killed mid-append) must not swallow ours.
                    separated = b"\n" + line if size and os.pread(fd, 1, size - 1) != b"\n" \
                        else line
                    _write_whole(fd, separated, size)
                    if size == 0:
                        _fsync_directory(self.directory)
                    return
                finally:
                    os.close(fd)
        except OSError as error:  # ENOSPC, EDQUOT, EIO, a directory that cannot be made
            raise SpoolFull(f"{self.stream} spool cannot be written: "
                            f"{error.strerror or type(error).__name__}") from error

    def _claimed_bytes(self) -> int:
        """Bytes in files renamed away for a replay that has not finished."""
        return sum(_size(path) for path in self._claimed_files())

    def _claimed_files(self) -> list[Path]:
        return sorted(self.directory.glob(f"{self.stream}.*.replaying"))

    def room_bytes(self) -> int:
        """How many more bytes this spool could take now: the least of what its cap leaves
        and what its file system has free (0 when the directory cannot be made)."""
        try:
            self._ensure_directory()
            free = _free_bytes(self.directory) - self.keep_free_bytes
        except OSError:
            return 0
        return max(0, min(self.max_bytes - self.depth_bytes(), free))

    def set_aside(self, record: dict[str, Any]) -> None:
        """Keep a record that can never be replayed in `<stream>.rejected`, for an operator."""
        self._ensure_directory()
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        fd = os.open(self.directory / f"{self.stream}.rejected",
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending_files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        current = [self.path] if self.path.exists() else []
        return self._claimed_files() + current

    def depth_bytes(self) -> int:
        return sum(_size(path) for path in self.pending_files())

    def is_empty(self) -> bool:
        return self.depth_bytes() == 0

    def replay(self, handle_batch: Callable[[list[dict[str, Any]]], None],
               batch_size: int = 500) -> int:
        """Feed every spooled record, oldest first, to `handle_batch`; delete what was handled.

        `handle_batch` must be idempotent (a crash after it ran and before the file is
        deleted replays the file again). If it raises, the file stays for the next replay,
        and the current file is not claimed: files left by failed replays are replayed first,
        so a database that keeps failing leaves one claimed file, not one per attempt.
        """
        self._ensure_directory()
        lock_fd = os.open(self.directory / f"{self.stream}.replay-lock", os.O_RDWR | os.O_CREAT,
                          0o600)
        try:
            try:  # one replayer at a time on this host, across processes and threads
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            handled = 0
            for path in self._claimed_files():  # left by a replay that failed
                handled += self._replay_file(path, handle_batch, batch_size)
            claimed = self._claim_current_file()
            if claimed is not None:
                handled += self._replay_file(claimed, handle_batch, batch_size)
            return handled
        finally:
            os.close(lock_fd)

    def _claim_current_file(self) -> Path | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        # A sortable name keeps replay order: the oldest claimed file first.
        target = self.directory / f"{self.stream}.{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.replaying"
        try:
            os.rename(self.path, target)
        except FileNotFoundError:
            return None
        _fsync_directory(self.directory)
        return target

    def _replay_file(self, path: Path, handle_batch, batch_size: int) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits out a writer that was mid-append
            with os.fdopen(os.dup(fd), "rb") as handle:
                records = list(_read_records(handle))
        finally:
            os.close(fd)
        for start in range(0, len(records), batch_size):
            handle_batch(records[start:start + batch_size])
        path.unlink()
        _fsync_directory(self.directory)
        return len(records)


def _read_records(handle) -> Iterator[dict[str, Any]]:
    for raw in handle:
        if not raw.endswith(b"\n"):
            break  # a torn last line: its writer crashed before fsync, so it was never answered
        try:
            yield json.loads(raw)
        except ValueError:
            log.warning("skipping an unreadable spool line")


def _write_whole(fd: int, line: bytes, size: int) -> None:
    """Write `line` at the end of the file (which held `size` bytes) and fsync; on any failure,
    cut the file back to `size` and raise."""
    try:
        written = 0
        while written < len(line):
            count = os.write(fd, line[written:])
            if count == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += count
        os.fsync(fd)
    except OSError:
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError:
            log.error("could not cut a spool file back after a failed append; the torn "
                      "line is skipped at replay")
        raise


def _free_bytes(directory: Path) -> int:
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _same_file(fd: int, path: Path) -> bool:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (stat.st_dev, stat.st_ino) == (opened.st_dev, opened.st_ino)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

