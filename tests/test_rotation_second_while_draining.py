"""A second rename rotation while the first rotated file is still being drained.

After a rename the exporter keeps the old file open for DRAIN_GRACE_SECONDS, because the MTA may still append
to it through its open descriptor. When the name is rotated again meanwhile, the file being drained is closed
for the newer one; it must be read to its end one last time first. A past bug closed it without that read and
lost what the MTA had appended to it since the exporter's previous look at it.

The look that sees the second rotation reads the draining file, then the live file, then notices the rotation.
The test stops the exporter (SIGSTOP) while it reads a large live file, after its first read of the draining
file and before it notices the rotation, and appends to the draining file then: only the last read before
closing can see those lines.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from daemon_harness import Exporter, bounced, sent_lines
from support import open_fds

BIG_LINES = 50_000
"""Lines in the live file at the second rotation: reading them keeps the exporter busy long enough to be
stopped in the middle (about 12 MB, 180 reads of 64 KiB)."""


def _stop(exporter: Exporter) -> int:
    """SIGSTOP, and wait until every thread of the exporter is stopped; returns the pid."""
    assert exporter.proc is not None
    pid = exporter.proc.pid
    exporter.proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while not _all_threads_stopped(pid):
        assert time.monotonic() < deadline, "the exporter did not stop"
        time.sleep(0.001)
    return pid


def _resume(exporter: Exporter) -> None:
    assert exporter.proc is not None
    exporter.proc.send_signal(signal.SIGCONT)


def _all_threads_stopped(pid: int) -> bool:
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "T":
            return False
    return True


def _offset(pid: int, fd: int) -> int:
    """Where the exporter's descriptor `fd` stands in its file."""
    for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines():
        if line.startswith("pos:"):
            return int(line.split()[1])
    raise AssertionError(f"no pos in /proc/{pid}/fdinfo/{fd}")


def test_second_rotation_reads_the_draining_file_to_its_end_before_closing_it(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.touch()
    sent = bounced_total = 0

    def write(f: int | Path, start: int, count: int, *, with_bounce: bool = False) -> None:
        """Appends `count` sent lines (and one bounce) through the descriptor or path `f`."""
        nonlocal sent, bounced_total
        text = sent_lines(start, count) + (bounced(start + count) if with_bounce else "")
        if isinstance(f, int):
            os.write(f, text.encode())
        else:
            with open(f, "a", encoding="utf-8") as out:
                out.write(text)
        sent += count
        bounced_total += with_bounce

    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        mta = os.open(log, os.O_WRONLY | os.O_APPEND)  # the MTA's descriptor: it follows the first file
        try:
            write(mta, 0, 5, with_bounce=True)
            exporter.wait_for("gmail_exporter_lines_total", sent + bounced_total)

            # First rotation (logrotate `create`): the exporter drains mail.log.1 and follows the new mail.log.
            os.rename(log, tmp_path / "mail.log.1")
            log.touch()
            exporter.wait_for("gmail_exporter_log_rotations_total", 1, kind="rename")
            write(mta, 10, 3)  # the MTA has not reopened its log yet
            write(log, 20, 2)
            exporter.wait_for("gmail_exporter_lines_total", sent + bounced_total)

            pid = _stop(exporter)
            first, second = open_fds(pid, tmp_path / "mail.log.1"), open_fds(pid, log)
            assert len(first) == 1 and len(second) == 1, (first, second)
            assert _offset(pid, second[0]) == os.path.getsize(log)  # idle: everything was read
            write(mta, 100, 10, with_bounce=True)  # read by the next look's first read of the draining file
            read_before = os.path.getsize(log)
            write(log, 1_000_000, BIG_LINES)
            big_end = os.path.getsize(log)
            # Second rotation while the first rotated file is still being drained.
            os.rename(tmp_path / "mail.log.1", tmp_path / "mail.log.2")
            os.rename(log, tmp_path / "mail.log.1")
            log.touch()
            write(log, 200, 3, with_bounce=True)
            _resume(exporter)

            # Stop the exporter while it reads the second file, i.e. after that look's read of the first one
            # and before it notices the rotation.
            deadline = time.monotonic() + 10
            while _offset(pid, second[0]) <= read_before:
                assert time.monotonic() < deadline, "the exporter never read the second file"
            _stop(exporter)
            try:
                caught = _offset(pid, second[0])
                assert read_before < caught < big_end, (
                    "not caught in the middle of the read",
                    caught,
                    big_end,
                )
                assert open_fds(pid, tmp_path / "mail.log.2") == first  # the first file is still open
                write(mta, 300, 7, with_bounce=True)  # only the last read before closing it can see these
            finally:
                _resume(exporter)
            print(
                f"\nstopped after {caught - read_before} of the second file's {big_end - read_before} new bytes"
            )

            expected = sent + bounced_total
            exporter.wait_for("gmail_exporter_lines_total", expected, timeout=15)
            time.sleep(1.5)  # past the next safety-net look: nothing is counted twice
            assert exporter.value("gmail_exporter_lines_total") == expected
            assert exporter.value("gmail_deliveries_total", status="sent") == sent
            assert exporter.value("gmail_deliveries_total", status="bounced") == bounced_total == 4
            assert exporter.value("gmail_deliveries_total") == expected
            assert exporter.value("gmail_exporter_log_rotations_total", kind="rename") == 2
            assert exporter.value("gmail_exporter_log_rotations_total", kind="recreate") == 0
            # Closed at the second rotation, not after the grace period.
            assert open_fds(pid, tmp_path / "mail.log.2") == []
        finally:
            os.close(mta)
