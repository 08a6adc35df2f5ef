"""A glob's match that goes away for good (a dated log deleted by retention) was followed for ever: its reader
thread kept looking, the landing page and the source metrics listed it, and its position stayed in the state file,
one more of each for every day of dated logs. Once gone for `retire_after` (nothing at its name, what was open read
to its end) it is retired; its position is kept, among a bounded number, so that a name that comes back is resumed,
not read again from its start."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from support import RecordingSink, running, wait_until

from exporter.ingest import Ingest
from exporter.metrics import Metrics
from exporter.sources import MAX_RETIRED
from exporter.sources.files import FileSource
from exporter.sources.identity import FileId
from exporter.sources.pacer import Timing
from exporter.sources.position import FilePosition

QUICK = Timing(poll=0.05, quiet=0.05, drain_grace=0.0, retry=(0.05, 0.2), retire_after=0.3)


def _reader_threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"follow {path}"]


def _lines(prefix: str, n: int) -> bytes:
    return b"".join(f"{prefix} {i}\n".encode() for i in range(n))


def test_a_deleted_glob_match_is_retired_and_its_reader_ends(tmp_path: Path) -> None:
    old, new = tmp_path / "mail-20261202.log", tmp_path / "mail-20261203.log"
    old.write_bytes(_lines("old", 3))
    new.write_bytes(_lines("new", 2))
    sink = RecordingSink()
    source = FileSource([str(tmp_path / "mail-*.log")], sink, max_line_bytes=32768, from_beginning=True,
                        timing=QUICK)  # fmt: skip
    with running(source):
        wait_until(lambda: sum(sink.seen.values()) == 5, "both logs read")
        old.unlink()
        wait_until(lambda: sink.retirements == [str(old)], "the deleted log retired")
        wait_until(lambda: not _reader_threads(old), "its reader thread ended")
        assert [s.name for s in source.statuses()] == [str(new)]
        with new.open("ab") as f:
            f.write(b"new 2\n")
        sink.wait_for(b"new 2", 10)
        assert _reader_threads(new)
    assert sink.seen == {
        **{f"old {i}".encode(): 1 for i in range(3)},
        **{f"new {i}".encode(): 1 for i in range(3)},
    }


def test_a_named_path_that_goes_away_is_never_retired(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_bytes(_lines("a", 2))
    sink = RecordingSink()
    source = FileSource([str(log)], sink, max_line_bytes=32768, from_beginning=True, timing=QUICK)
    with running(source):
        wait_until(lambda: sum(sink.seen.values()) == 2, "the log read")
        log.unlink()
        wait_until(lambda: not [s for s in source.statuses() if s.offset], "the deleted file let go")
        threading.Event().wait(1.0)  # more than three times retire_after
        assert sink.retirements == []
        assert _reader_threads(log)
        log.write_bytes(b"b 0\n")
        sink.wait_for(b"b 0", 10)


def test_a_retired_name_that_comes_back_is_read_from_its_start_once(tmp_path: Path) -> None:
    log = tmp_path / "queue-a.log"
    log.write_bytes(_lines("first", 4))
    sink = RecordingSink()
    source = FileSource(
        [str(tmp_path / "*.log")], sink, max_line_bytes=32768, from_beginning=True, timing=QUICK
    )
    with running(source):
        wait_until(lambda: sum(sink.seen.values()) == 4, "the log read")
        log.unlink()
        wait_until(lambda: sink.retirements == [str(log)], "the deleted log retired")
        log.write_bytes(_lines("second", 3))
        wait_until(lambda: sum(sink.seen.values()) == 7, "the new file read")
        threading.Event().wait(0.3)
    assert set(sink.seen.values()) == {1}


def test_a_saved_position_no_glob_matches_any_more_is_kept_only_among_the_latest(tmp_path: Path) -> None:
    ingest = Ingest(Metrics(categories=(), skip_reasons=()), lambda: _NoAnalyser())
    ident = FileId(1, 1, "0" * 64, 0)
    for day in range(MAX_RETIRED + 40):
        name = f"/var/log/mail-{day:04d}.log"
        ingest.started(name, FilePosition(ident, 0))
        ingest.block(name, b"", 10, FilePosition(ident, 10))
        ingest.retired(name)
    ingest.started("/var/log/mail.log", FilePosition(ident, 0))
    ingest.block("/var/log/mail.log", b"", 10, FilePosition(ident, 10))
    kept = ingest.positions()
    assert len(kept) == MAX_RETIRED + 1
    assert len(ingest.metrics.lines) == MAX_RETIRED + 1  # the forgotten sources' series went with them
    assert "/var/log/mail.log" in kept
    assert "/var/log/mail-0039.log" not in kept and "/var/log/mail-0040.log" in kept
    # A retired source that starts again is followed, not forgotten with the oldest.
    ingest.started("/var/log/mail-0040.log", FilePosition(ident, 0))
    ingest.retired("/var/log/mail-9999.log")  # never followed: nothing to keep
    assert "/var/log/mail-0040.log" in ingest.positions()


class _NoAnalyser:
    def analyse_block(self, blob: bytes) -> tuple[int, list[object]]:
        return 0, []

    def memory(self) -> dict[str, object]:
        return {}

    def restore_memory(self, data: object) -> None:
        pass


def test_saved_positions_of_files_no_longer_matched_are_retired_at_start(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_bytes(b"x\n")
    gone = str(tmp_path / "mail-20250101.log")
    ident = FileId(os.stat(log).st_dev, 1, "0" * 64, 0)
    sink = RecordingSink()
    source = FileSource([str(tmp_path / "*.log")], sink, max_line_bytes=32768, timing=QUICK,
                        saved={gone: FilePosition(ident, 10)})  # fmt: skip
    with running(source):
        wait_until(lambda: sink.retirements == [gone], "the unmatched saved position retired")
