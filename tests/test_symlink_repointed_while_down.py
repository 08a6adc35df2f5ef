"""A followed symbolic link re-pointed while the exporter is down, as Kubernetes does for
/var/log/containers/<pod>.log when a container restarts (pods/<uid>/<container>/0.log, then 1.log): the old
target's tail, written before the container stopped, is read first, then the new target, each line once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_harness import STOPS, Exporter, append, bounced, sent_lines
from support import RecordingSink, open_fds, running

from exporter.sources.files import FileSource
from exporter.sources.pacer import Timing


@pytest.mark.parametrize("stop", STOPS.values(), ids=STOPS.keys())
def test_a_symlink_repointed_while_down_reads_the_old_targets_tail_then_the_new_target(
    tmp_path: Path, stop: Callable[[Exporter], None]
) -> None:
    pods, containers = tmp_path / "pods" / "mta", tmp_path / "containers"
    pods.mkdir(parents=True)
    containers.mkdir()
    first, second = pods / "0.log", pods / "1.log"
    link = containers / "mta.log"
    append(first, sent_lines(0, 500))
    link.symlink_to(first)
    with Exporter(tmp_path, "--log.path", str(link), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 500, status="sent")
        stop(exporter)
    append(first, sent_lines(500, 100))  # the container's last lines, after the exporter stopped
    append(second, sent_lines(600, 47) + bounced(647))  # the restarted container
    link.unlink()
    link.symlink_to(second)
    with Exporter(tmp_path, "--log.path", str(link)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 647, status="sent")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_exporter_lines_total", source=str(link)) == 648
        append(second, sent_lines(648, 5))
        exporter.wait_for("gmail_deliveries_total", 652, status="sent")
        # The old target is drained like a rotated file (its container may still write until it stops), then let
        # go once it has not grown for the drain grace (looked at every poll while draining): then it is no longer
        # followed. Appended to once the exporter has closed it: a reader starved on a busy machine may still hold
        # it some time after the grace, and reads what is appended when it gets to its look.
        assert exporter.proc is not None
        pid = exporter.proc.pid
        exporter.wait_until(lambda: not open_fds(pid, first), 30, "the old target let go")
        append(first, sent_lines(700, 3))
        exporter.wait_for("gmail_exporter_lines_total", 653, source=str(link))
        assert exporter.value("gmail_exporter_log_offset_bytes", source=str(link)) == second.stat().st_size
        assert exporter.stop() == 0


def test_appends_to_a_symlinks_target_in_another_directory_wake_the_reader(tmp_path: Path) -> None:
    """inotify on the link's directory sees nothing written to the target: the target's directory is watched too,
    also after the link is re-pointed to a third directory. The safety net is an hour here: only inotify wakes."""
    first, second = tmp_path / "pods" / "a" / "0.log", tmp_path / "pods" / "b" / "0.log"
    first.parent.mkdir(parents=True)
    second.parent.mkdir(parents=True)
    first.write_bytes(b"")
    second.write_bytes(b"")
    link = tmp_path / "containers" / "mta.log"
    link.parent.mkdir()
    link.symlink_to(first)
    sink = RecordingSink()
    source = FileSource(
        [str(link)], sink, max_line_bytes=32768, timing=Timing(poll=3600.0, quiet=3600.0, drain_grace=0.0)
    )
    with running(source):
        sink.wait_started()
        for n in range(3):
            append(first, f"first {n}\n")
            sink.wait_for(b"first %d" % n, 20)
        link.unlink()
        link.symlink_to(second)  # announced in the link's directory
        append(second, "second 0\n")
        sink.wait_for(b"second 0", 20)
        for n in range(1, 3):
            append(second, f"second {n}\n")
            sink.wait_for(b"second %d" % n, 20)
        assert sink.seen == {
            **{b"first %d" % n: 1 for n in range(3)},
            **{b"second %d" % n: 1 for n in range(3)},
        }
