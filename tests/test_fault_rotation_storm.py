"""A rotation storm under continuous writing: every line that reached a file is counted once, none twice.

copytruncate loses the lines written between logrotate's copy and its truncation in the files themselves; the
rotator here holds the writer off for that moment, so that the files hold every line the exporter could have
seen and the comparison can be exact.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import Exporter, append, bounced, sent_lines
from fault_load import as_dict, exporter_totals
from fault_rotation import METHODS, Rotator, Writer


def _storm(tmp_path: Path, rotations: int, interval: float) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    rng = random.Random(rotations)
    methods = [METHODS[i % len(METHODS)] for i in range(rotations)]
    rng.shuffle(methods)
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        writer = Writer(log).start()
        rotator = Rotator(log, writer)
        started = time.monotonic()
        try:
            for method in methods:
                time.sleep(interval * rng.uniform(0.5, 1.5))
                rotator.rotate(method)
        finally:
            writer.stop()
        seconds = time.monotonic() - started
        expected = rotator.expected()
        exporter.wait_for("gmail_exporter_lines_total", expected.lines, timeout=30)
        got = exporter_totals(exporter.scrape())
        rotations_seen = {
            kind: exporter.value("gmail_exporter_log_rotations_total", kind=kind)
            for kind in ("rename", "truncate", "recreate")
        }
    print(
        f"\nrotation storm: {rotations} rotations {dict(rotator.done)} in {seconds:.1f} s; "
        f"{writer.written} lines written ({writer.written / seconds:.0f}/s), {expected.lines} in the files, "
        f"{got.lines} counted; rotations seen {rotations_seen}"
    )
    assert as_dict(got) == as_dict(expected)
    assert expected.lines == writer.written  # the writer was held off during copytruncate: nothing lost
    # A renamed file that is compressed and deleted before the exporter looks is indistinguishable from a
    # deleted one: the kind may say recreate for it, never anything else.
    assert rotations_seen["truncate"] == rotator.done["copytruncate"]
    assert rotations_seen["rename"] <= rotator.done["rename"] + rotator.done["gzip"]
    assert rotations_seen["rename"] + rotations_seen["recreate"] == rotations - rotator.done["copytruncate"]


def test_rotation_storm_counts_every_line_in_the_files_once(tmp_path: Path) -> None:
    _storm(tmp_path, rotations=20, interval=0.4)


@pytest.mark.slow
def test_rotation_storm_of_100_rotations(tmp_path: Path) -> None:
    _storm(tmp_path, rotations=100, interval=0.3)


def _frozen(exporter: Exporter) -> contextlib.AbstractContextManager[None]:
    """The exporter stopped (SIGSTOP) for the block: what happens meanwhile happens between two of its looks."""

    @contextlib.contextmanager
    def frozen() -> Iterator[None]:
        assert exporter.proc is not None
        exporter.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            exporter.proc.send_signal(signal.SIGCONT)

    return frozen()


def test_copytruncate_reads_lines_it_had_not_seen_from_the_copy(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 10))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 10, status="sent")
        with _frozen(exporter):
            append(log, sent_lines(10, 5) + bounced(15))  # written after the last read, before the copy
            shutil.copyfile(log, tmp_path / "mail.log.1")
            os.truncate(log, 0)
            append(log, sent_lines(16, 2))
        exporter.wait_for("gmail_deliveries_total", 17, status="sent")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_exporter_lines_total") == 18
        assert exporter.value("gmail_exporter_log_rotations_total", kind="truncate") == 1


def test_truncated_file_that_grew_past_the_old_offset_is_read_from_its_start_only(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 3))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 3, status="sent")
        with _frozen(exporter):
            shutil.copyfile(log, tmp_path / "mail.log.1")
            os.truncate(log, 0)
            append(log, sent_lines(100, 9) + bounced(109))  # longer than what was read before
        exporter.wait_for("gmail_exporter_lines_total", 13)
        assert exporter.value("gmail_deliveries_total", status="sent") == 12
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_rejections_total") == 1
        assert exporter.value("gmail_exporter_log_rotations_total", kind="truncate") == 1


def test_a_generation_created_and_rotated_between_two_looks_is_read(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 4))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 4, status="sent")
        with _frozen(exporter):  # a stalled exporter (or an inotify overflow) misses a whole generation
            append(log, sent_lines(4, 1))
            os.rename(log, tmp_path / "mail.log.1")
            append(log, sent_lines(5, 6) + bounced(11))
            os.rename(tmp_path / "mail.log.1", tmp_path / "mail.log.2")
            os.rename(log, tmp_path / "mail.log.1")
            append(log, sent_lines(12, 3))
        exporter.wait_for("gmail_deliveries_total", 14, status="sent")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_exporter_lines_total") == 15


def _rotate(log: Path, method: str) -> None:
    """One rotation of `log` by `method` (see fault_rotation.METHODS), with logrotate's shift of the generations."""
    for path in sorted(
        log.parent.glob(f"{log.name}.*"), key=lambda p: int(p.name.split(".")[2]), reverse=True
    ):
        number = int(path.name.split(".")[2])
        path.rename(path.with_name(path.name.replace(f".{number}", f".{number + 1}", 1)))
    first = log.with_name(f"{log.name}.1")
    if method == "copytruncate":
        shutil.copyfile(log, first)
        os.truncate(log, 0)
    elif method == "delete":
        os.unlink(log)
    else:
        os.rename(log, first)
        if method == "gzip":
            with open(first, "rb") as src, gzip.open(f"{first}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.unlink(first)


@pytest.mark.parametrize("second", ["copytruncate", "rename"])
@pytest.mark.parametrize("first", METHODS)
def test_two_rotations_between_two_looks_lose_and_repeat_no_line(
    tmp_path: Path, first: str, second: str
) -> None:
    """A stalled exporter (a slow disk, a busy host) misses a rotation and the next. The second one's generation
    holds lines written after the first: after a deletion no generation is the file that was read, to count newer
    ones from; after copytruncate, the lines of each copy but the first were never in the file as it was read."""
    log = tmp_path / "mail.log"
    append(log, sent_lines(0, 4))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_exporter_lines_total", 4)
        with _frozen(exporter):
            append(log, sent_lines(4, 2))  # written after the last read, before the first rotation
            _rotate(log, first)
            append(log, sent_lines(6, 3) + bounced(9))  # only ever in the file between the two rotations
            _rotate(log, second)
            append(log, sent_lines(100, 40 if second == "copytruncate" else 2))  # past the offset read before
        lines = 10 + (40 if second == "copytruncate" else 2)
        exporter.wait_for("gmail_exporter_lines_total", lines)
        assert exporter.value("gmail_deliveries_total", status="sent") == lines - 1
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
