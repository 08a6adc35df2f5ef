"""Globs and paths that name a file twice, or name files that are not logs of their own: each line is still counted
once.

- `mail*` matches mail.log's rotated generations: followed on their own, they were read as logs of their own
  (17 lines counted for the 10 of mail.log at start), and each rename rotation made the follower of mail.log.1
  read the file just rotated into it again. They are read through mail.log, as its backlog, and not followed.
- A glob over the state file's directory matched the state file, its previous generation and its lock: the
  exporter counted its own state as log lines, and every state write as a rotation.
- A log named twice (a symbolic link and its target, or two spellings of one path) was followed twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent_lines


def _sources(exporter: Exporter) -> set[str]:
    return {
        dict(labels)["source"] for (name, labels) in exporter.scrape() if name == "gmail_exporter_source_up"
    }


def test_a_glob_matching_rotated_generations_counts_each_line_once(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    append(tmp_path / "mail.log.1", sent_lines(0, 7))  # the backlog of mail.log: not followed on its own
    append(log, sent_lines(7, 10))
    append(tmp_path / "mail.err", bounced(17))  # matched too, and a log of its own
    with Exporter(tmp_path, "--log.path", str(tmp_path / "mail*"), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 10, status="sent")
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        assert _sources(exporter) == {str(log), str(tmp_path / "mail.err")}
        os.rename(tmp_path / "mail.log.1", tmp_path / "mail.log.2")
        os.rename(log, tmp_path / "mail.log.1")
        append(log, sent_lines(17, 5))
        exporter.wait_for("gmail_deliveries_total", 15, status="sent")
        assert exporter.value("gmail_exporter_log_rotations_total", source=str(log), kind="rename") == 1
        assert _sources(exporter) == {str(log), str(tmp_path / "mail.err")}
        assert exporter.stop() == 0
    assert "rotated generation of" in exporter.output()


def test_a_glob_over_the_state_directory_does_not_follow_the_state_file(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "mail.log"
    state = logs / "state.json"
    append(log, sent_lines(0, 4))
    with Exporter(tmp_path, "--log.path", str(logs / "*"), "--from-beginning", state_file=state) as exporter:
        exporter.wait_for("gmail_deliveries_total", 4, status="sent")
        append(log, sent_lines(4, 3))
        exporter.wait_for("gmail_deliveries_total", 7, status="sent")
        # A few state writes later (one every 5 s while lines come): still only the log is followed.
        exporter.wait_until(lambda: Path(f"{state}.1").exists(), 15, "a second state write")
        append(log, sent_lines(7, 1))
        exporter.wait_for("gmail_deliveries_total", 8, status="sent")
        assert _sources(exporter) == {str(log)}
        assert exporter.value("gmail_exporter_lines_total") == 8
        assert exporter.stop() == 0
    assert list(json.loads(state.read_text())["positions"]) == [str(log)]


def test_a_log_named_twice_is_followed_once(tmp_path: Path) -> None:
    pods, containers = tmp_path / "pods", tmp_path / "containers"
    pods.mkdir()
    containers.mkdir()
    target = pods / "0.log"
    link = containers / "mta.log"
    append(target, sent_lines(0, 6))
    link.symlink_to(target)
    args = ["--log.path", str(link), "--log.path", str(containers / ".." / "pods" / "0.log")]
    args += ["--log.path", str(pods / "*.log"), "--from-beginning"]
    with Exporter(tmp_path, *args) as exporter:
        exporter.wait_for("gmail_deliveries_total", 6, status="sent")
        append(target, sent_lines(6, 2))
        exporter.wait_for("gmail_deliveries_total", 8, status="sent")
        assert _sources(exporter) == {str(link)}
        assert exporter.stop() == 0
    output = exporter.output()
    assert f"is the file {link} names; following it once" in output
