"""Container logs followed as Kubernetes and Docker rotate them: kubelet renames `0.log` to `0.log.<time>`, later
compresses that one through a `.tmp` file; Docker's json-file driver renames `<id>-json.log` to `.1`, `.2`…
A line in parts split by a rotation or a restart is one line."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from daemon_harness import Exporter, append, bounced, sent_lines

from bench.containers import cri, cri_entry, docker


def write(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def kubelet_compress(path: Path) -> None:
    """What kubelet does to a rotated log: gzip into `<name>.tmp`, rename to `<name>.gz`, remove the original."""
    tmp = Path(f"{path}.tmp")
    tmp.write_bytes(gzip.compress(path.read_bytes()))
    os.rename(tmp, f"{path}.gz")
    os.unlink(path)


def test_kubelet_rotation_with_a_line_split_across_it_counts_every_line_once(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    write(log, cri(sent_lines(0, 5).encode()))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 5, status="sent")
        line = bounced(5).encode()
        write(log, cri_entry(line[:100], tag="P"))
        first = tmp_path / "0.log.20261203-135700"
        os.rename(log, first)  # kubelet renames, then the runtime reopens the name
        write(log, cri_entry(line[100:-1]) + cri(sent_lines(6, 3).encode()))
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        exporter.wait_for("gmail_deliveries_total", 8, status="sent")
        # The next rotation compresses the previous one through a .tmp file while the exporter reads on.
        kubelet_compress(first)
        os.rename(log, tmp_path / "0.log.20261203-140200")
        write(log, cri(sent_lines(9, 2).encode()))
        exporter.wait_for("gmail_deliveries_total", 10, status="sent")
        assert exporter.value("gmail_rejections_total", category="authentication", reason="dmarc_policy") == 1
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 5 + 2 + 3 + 2
        assert exporter.value("gmail_exporter_lines_skipped_total") == 0


def test_json_file_rotations_while_down_are_read_oldest_first(tmp_path: Path) -> None:
    log = tmp_path / "abc-json.log"
    write(log, docker(sent_lines(0, 4).encode()))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 4, status="sent")
        assert exporter.stop() == 0
    write(log, docker(sent_lines(4, 2).encode()))
    os.rename(log, tmp_path / "abc-json.log.1")
    write(log, docker(bounced(6).encode()))
    os.rename(tmp_path / "abc-json.log.1", tmp_path / "abc-json.log.2")
    os.rename(log, tmp_path / "abc-json.log.1")
    write(log, docker(sent_lines(7, 1).encode()))
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 7, status="sent")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 8


def test_a_line_in_parts_split_by_a_restart_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    line = bounced(0).encode()
    cut = line.index(b"gsmtp") + 3  # the end alone holds no sign of a reply: it counts only joined
    write(
        log,
        cri(sent_lines(1, 2).encode()) + cri_entry(line[:120], tag="P") + cri_entry(line[120:cut], tag="P"),
    )
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 2, status="sent")
        exporter.wait_for("gmail_exporter_lines_total", 4, source=str(log))
        assert exporter.stop() == 0
    write(log, cri_entry(line[cut:-1]))
    append(log, cri(sent_lines(3, 1).encode()).decode())
    with Exporter(tmp_path, "--log.path", str(log)) as exporter:
        exporter.wait_for("gmail_deliveries_total", 3, status="sent")
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        assert exporter.value("gmail_rejections_total", category="authentication", reason="dmarc_policy") == 1
        assert exporter.value("gmail_exporter_lines_skipped_total") == 0


def test_a_damaged_json_line_in_a_followed_log_is_skipped_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "abc-json.log"
    write(log, docker(sent_lines(0, 2).encode()) + b'{"log":"Dec  3 13:57:16 mx1 postfix/smtp[1]: 0F\n')
    write(log, docker(bounced(2).encode()))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        assert exporter.value("gmail_deliveries_total", status="sent") == 2
        assert exporter.value("gmail_exporter_lines_skipped_total", reason="unparseable") == 1


def test_a_glob_over_pod_directories_reads_a_new_pod_and_a_restarted_container_whole(tmp_path: Path) -> None:
    pods = tmp_path / "pods"
    first = pods / "mail_postfix-0_7c1d" / "postfix"
    first.mkdir(parents=True)
    write(first / "0.log", cri(sent_lines(0, 2).encode()))
    pattern = str(pods / "mail_*" / "postfix" / "*.log")
    with Exporter(tmp_path, "--log.path", pattern) as exporter:
        write(first / "0.log", cri(sent_lines(2, 1).encode()))
        exporter.wait_for("gmail_deliveries_total", 1, status="sent")
        second = pods / "mail_postfix-1_9e4a" / "postfix"  # a pod scheduled on the node later
        second.mkdir(parents=True)
        write(second / "0.log", cri(sent_lines(3, 2).encode()))
        write(first / "1.log", cri(bounced(5).encode()))  # the first pod's container restarted
        exporter.wait_for("gmail_deliveries_total", 3, status="sent", timeout=30)
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced", timeout=30)
        assert exporter.value("gmail_exporter_lines_total") == 1 + 2 + 1


def test_a_part_at_the_end_of_the_log_waits_for_its_last_part_and_counts_once(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    line = bounced(0).encode()
    write(log, cri(sent_lines(1, 1).encode()) + cri_entry(line[:200], tag="P"))
    with Exporter(tmp_path, "--log.path", str(log), "--from-beginning") as exporter:
        exporter.wait_for("gmail_exporter_lines_total", 2, source=str(log))
        assert exporter.value("gmail_deliveries_total", status="bounced") == 0  # half a line says nothing yet
        write(log, cri_entry(line[200:-1]))
        exporter.wait_for("gmail_deliveries_total", 1, status="bounced")
        write(log, cri(sent_lines(2, 1).encode()))
        exporter.wait_for("gmail_deliveries_total", 2, status="sent")
        assert exporter.value("gmail_deliveries_total", status="bounced") == 1
        assert exporter.value("gmail_exporter_lines_total", source=str(log)) == 4
