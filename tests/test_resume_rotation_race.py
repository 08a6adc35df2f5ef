"""A restart whose backlog spans rotations, and the MTA rotates again while the backlog is being read: the file
that was the live one when reading began is a sibling by the time it is due. Every line is read once.

A real FollowedFile on real files; the rotation is made at one exact moment, right after the last rotated file
of the backlog was read, by wrapping the Backlog method that reads a generation."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from support import RecordingSink

from exporter.sources.backlog import Backlog
from exporter.sources.files import FollowedFile
from exporter.sources.position import FilePosition


def write(path: Path, name: str, count: int) -> list[bytes]:
    lines = [f"{name} line {n}".encode() for n in range(count)]
    with path.open("ab") as f:
        f.write(b"".join(line + b"\n" for line in lines))
    return lines


def rotate(log: Path) -> None:
    """logrotate's rename rotation: name.k -> name.k+1, name -> name.1."""
    for k in range(8, 0, -1):
        older = log.with_name(f"{log.name}.{k}")
        if older.exists():
            older.rename(log.with_name(f"{log.name}.{k + 1}"))
    log.rename(log.with_name(f"{log.name}.1"))


def test_a_rotation_while_the_backlog_is_read_loses_no_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "mail.log"
    stop = threading.Event()
    first = RecordingSink()
    written = write(log, "a", 30)
    before = FollowedFile(str(log), first, max_line_bytes=4096, start_at_end=False)
    before.start(stop)
    before.close()
    assert first.position is not None and sum(first.seen.values()) == 30
    # Down: more lines in a, two rotations (a -> .2, b -> .1), c is the live file.
    written += write(log, "a", 5)
    rotate(log)
    written += write(log, "b", 20)
    rotate(log)
    written += write(log, "c", 10)

    # Right after the backlog's last rotated file (b, at .1) is read, the MTA rotates: c becomes .1, d is new.
    drain = Backlog._drain
    rotations: list[str] = []

    def drain_then_rotate(self: Backlog, path: str, *args: object) -> None:
        drain(self, path, *args)  # type: ignore[arg-type]
        if path.endswith(".1") and not rotations:
            rotations.append(path)
            rotate(log)
            written.extend(write(log, "d", 7))

    monkeypatch.setattr(Backlog, "_drain", drain_then_rotate)
    second = RecordingSink()
    assert isinstance(first.position, FilePosition)
    after = FollowedFile(str(log), second, max_line_bytes=4096, start_at_end=False, saved=first.position)
    after.start(stop)
    after.look(stop)
    after.close()
    assert rotations  # the rotation did happen mid-resume
    assert first.seen + second.seen == Counter(written)
