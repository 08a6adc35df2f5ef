"""Join memory is saved per log (a busy Postfix log with sender domains on holds 20,000 queue ids of each kind,
about 1.3 MB of JSON): on a central syslog host following a few dozen busy logs, the state file would outgrow what
a start accepts (MAX_STATE_BYTES) and the next start would set it aside whole, losing every position and counter.
The largest memories are left out instead; positions and counters are always written. (The limit is lowered here
so a few logs reach it.)"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from daemon_harness import deferred

from exporter import state as state_module
from exporter.analyse import Analyser
from exporter.rules import load_rules
from exporter.sources.identity import FileId
from exporter.sources.position import FilePosition
from exporter.state import Snapshot, StateFile

RULES = load_rules(())


def _busy_log_memory(messages: int) -> dict[str, object]:
    analyser = Analyser(RULES, track_senders=True)
    lines = []
    for n in range(messages):
        lines.append(
            f"Nov 29 21:32:40 mx1 postfix/qmgr[811]: {n:010X}: from=<n{n}@example.org>, size=306, nrcpt=1"
        )
        lines.append(deferred(n).rstrip("\n"))
    analyser.analyse_block("\n".join(lines).encode())
    return analyser.memory()


def test_the_join_memory_of_many_busy_logs_never_makes_the_state_file_too_big_to_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(state_module, "MAX_STATE_BYTES", 1 << 20)
    sizes = {
        f"/var/log/remote/host{i:02d}/mail.log": 1500 + 500 * i for i in range(8)
    }  # 1,500 to 5,000 messages
    memory = {log: _busy_log_memory(messages) for log, messages in sizes.items()}
    positions = {
        log: FilePosition(FileId(1, 100 + i, "0" * 64, 0), 1000 * i) for i, log in enumerate(sizes, start=1)
    }
    metrics = {"lines": {log: 2.0 * n for log, n in sizes.items()}}
    snapshot = Snapshot(positions=positions, metrics=metrics, memory=memory)
    saved = StateFile(str(tmp_path / "state.json"))
    with caplog.at_level(logging.WARNING, logger="exporter.state"):
        saved.save(snapshot)
        saved.save(snapshot)
    assert (tmp_path / "state.json").stat().st_size <= 1 << 20
    assert caplog.text.count("join memory of") == 1  # once, not at every write

    def validate(loaded: Snapshot) -> None:
        for data in loaded.memory.values():
            Analyser(RULES, track_senders=True).restore_memory(data)

    loaded = StateFile(str(tmp_path / "state.json")).load(validate)
    assert loaded is not None, "the state file was set aside"
    assert loaded.positions == positions and loaded.metrics == metrics
    kept = set(loaded.memory)
    assert kept and kept < set(memory)
    smallest_first = sorted(memory, key=lambda log: sizes[log])
    assert kept == set(smallest_first[: len(kept)])  # the largest are the ones left out
    assert all(loaded.memory[log] == memory[log] for log in kept)
