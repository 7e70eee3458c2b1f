"""The local durable spool: where heartbeats and error records wait while the database is down.

One append-only JSON-lines file per stream (`heartbeats.jsonl`, `errors.jsonl`) in SPOOL_DIR,
shared by every worker process on the host. Writers append one line under an exclusive
`flock` and fsync before answering. The replayer renames the file away (new appends start a
new file), takes the lock on the renamed file, so no writer is still mid-append, and reads it.
A writer that opened the old name just before the rename notices, after locking, that the
name no longer points at its file, and reopens.
"""
from __future__ import annotations

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
    """The spool reached its size limit; refusing more protects the disk."""


class Spool:
    """An append-only, fsync'd, multi-process-safe queue of JSON records on local disk."""

    def __init__(self, directory: str, stream: str, max_bytes: int = 512 * 1024 * 1024):
        self.directory = Path(directory)
        self.stream = stream
        self.path = self.directory / f"{stream}.jsonl"
        self.max_bytes = max_bytes

    def _ensure_directory(self) -> None:
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            _fsync_directory(self.directory.parent)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably: when this returns, it survives a crash."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        self._ensure_directory()
        while True:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _same_file(fd, self.path):
                    continue  # renamed away for replay between our open and our lock
                size = os.fstat(fd).st_size
                if size + len(line) > self.max_bytes:
                    raise SpoolFull(f"{self.stream} spool holds {size} bytes")
                os.write(fd, line)
                os.fsync(fd)
                if size == 0:
                    _fsync_directory(self.directory)
                return
            finally:
                os.close(fd)

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
        claimed = sorted(self.directory.glob(f"{self.stream}.*.replaying"))
        current = [self.path] if self.path.exists() else []
        return claimed + current

    def depth_bytes(self) -> int:
        total = 0
        for path in self.pending_files():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def is_empty(self) -> bool:
        return self.depth_bytes() == 0

    def replay(self, handle_batch: Callable[[list[dict[str, Any]]], None],
               batch_size: int = 500) -> int:
        """Feed every spooled record, oldest first, to `handle_batch`; delete what was handled.

        `handle_batch` must be idempotent (a crash after it ran and before the file is
        deleted replays the file again). If it raises, the file stays for the next replay.
        """
        self._ensure_directory()
        lock_fd = os.open(self.directory / f"{self.stream}.replay-lock", os.O_RDWR | os.O_CREAT,
                          0o600)
        try:
            try:  # one replayer at a time on this host, across processes and threads
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0
            self._claim_current_file()
            handled = 0
            for path in sorted(self.directory.glob(f"{self.stream}.*.replaying")):
                handled += self._replay_file(path, handle_batch, batch_size)
            return handled
        finally:
            os.close(lock_fd)

    def _claim_current_file(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        # A sortable name keeps replay order: the oldest claimed file first.
        target = self.directory / f"{self.stream}.{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.replaying"
        try:
            os.rename(self.path, target)
        except FileNotFoundError:
            return
        _fsync_directory(self.directory)

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

