"""kill -9 during continuous writing, then a restart: every line counted exactly once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import Exporter, append, bounced, sent


def _writer(log: Path, stop: threading.Event, written: list[int]) -> None:
    n = 0
    with open(log, "a") as f:
        while not stop.is_set():
            for _ in range(50):
                f.write(bounced(n) if n % 10 == 0 else sent(n))
                n += 1
            f.flush()
            written[0] = n
            time.sleep(0.01)


Writer = Callable[[Path, threading.Event, list[int]], None]


def _kill_9_while_writing(
    tmp_path: Path, log: Path, writer_loop: Writer, *, after_flush: float, down: float
) -> tuple[Exporter, int]:
    """Runs an exporter while `writer_loop` appends, kills it -9 `after_flush` s after its first state flush,
    restarts it `down` s later, lets both run 1 s, stops the writer: (the running second exporter, lines
    written)."""
    log.touch()
    stop = threading.Event()
    written = [0]
    writer = threading.Thread(target=writer_loop, args=(log, stop, written))
    first = Exporter(tmp_path, "--log.path", str(log)).start()
    writer.start()
    try:
        first.wait_until(lambda: (tmp_path / "state.json").exists(), 10, "a state flush")
        time.sleep(after_flush)
        first.kill9()
        time.sleep(down)  # lines written (and, for the rotating writer, rotations) while down
        second = Exporter(tmp_path, "--log.path", str(log)).start()
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join()
    return second, written[0]


def test_kill_9_and_restart_count_every_line_once(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    # 1 s of lines read after the flush: counted again after the restart unless the state is exact.
    second, total = _kill_9_while_writing(tmp_path, log, _writer, after_flush=1.0, down=0.5)
    with second:
        second.wait_for("gmail_deliveries_total", total - total // 10, status="sent", timeout=20)
        assert second.value("gmail_deliveries_total", status="bounced") == total // 10
        assert second.value("gmail_rejections_total", category="authentication") == total // 10
        assert second.value("gmail_exporter_lines_total", source=str(log)) == total
        assert second.stop() == 0
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["version"] == 2
    assert saved["positions"][str(log)]["offset"] == log.stat().st_size


def test_sigterm_flushes_state_and_counters_continue(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(log, sent(1) + bounced(2))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        assert exporter.stop() == 0
    append(log, bounced(3))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 2, status="bounced")
        assert exporter.value("gmail_deliveries_total", status="sent") == 1
        assert exporter.value("gmail_consecutive_rejections") == 2


def test_unwritable_state_file_keeps_serving(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    (tmp_path / "not-a-dir").write_text("")
    log.touch()
    state = tmp_path / "not-a-dir" / "state.json"
    with Exporter(tmp_path, "--log.path", str(log), state_file=state) as exporter:
        append(log, sent(1))
        exporter.wait_for("gmail_deliveries_total", 1, status="sent")
        exporter.wait_until(lambda: exporter.value("gmail_exporter_state_write_errors_total") >= 1, 10)
        assert exporter.stop() == 0


def _rotating_writer(log: Path, stop: threading.Event, written: list[int]) -> None:
    """Writes continuously and rotates like logrotate (name.1 -> name.2, name -> name.1) every 0.4 s."""
    n = 0
    rotated_at = time.monotonic()
    while not stop.is_set():
        with open(log, "a") as f:
            for _ in range(20):
                f.write(bounced(n) if n % 10 == 0 else sent(n))
                n += 1
        written[0] = n
        time.sleep(0.01)
        if time.monotonic() - rotated_at > 0.4:
            rotated_at = time.monotonic()
            for k in range(8, 0, -1):
                older = log.with_name(f"{log.name}.{k}")
                if older.exists():
                    older.rename(log.with_name(f"{log.name}.{k + 1}"))
            log.rename(log.with_name(f"{log.name}.1"))


def test_kill_9_during_rotations_counts_every_line_once(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    second, total = _kill_9_while_writing(tmp_path, log, _rotating_writer, after_flush=0.7, down=1.0)
    with second:
        second.wait_for("gmail_exporter_lines_total", total, source=str(log), timeout=20)
        assert second.value("gmail_deliveries_total", status="sent") == total - (total + 9) // 10
        assert second.value("gmail_deliveries_total", status="bounced") == (total + 9) // 10


@pytest.mark.parametrize("late", [False, True], ids=["existing", "late"])
def test_lines_written_while_down_are_read_even_when_none_came_before_the_stop(
    tmp_path: Path, late: bool
) -> None:
    """A quiet night: the exporter starts at the end of a log (or the log appears after it started, empty),
    nothing is appended before it stops, mail flows while it is down. The position where following began is
    saved, so the restart reads those lines."""
    log = tmp_path / "mail.log"
    if not late:
        append(log, "".join(sent(n) for n in range(3)))  # there before the first start: not counted (tail -F)
    with Exporter(tmp_path, "--log.path", str(log)).start() as first:
        if late:
            log.touch()
        state = tmp_path / "state.json"
        first.wait_until(
            lambda: state.exists() and str(log) in json.loads(state.read_text())["positions"],
            15,
            "a saved position",
        )
        assert first.stop() == 0
    append(log, "".join(bounced(n) for n in range(5)))
    with Exporter(tmp_path, "--log.path", str(log)).start() as second:
        second.wait_for("gmail_deliveries_total", 5, status="bounced")
        assert second.value("gmail_deliveries_total", status="sent") == 0
