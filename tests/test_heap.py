"""Keeping freed blocks (exporter.heap): a large read touches fresh pages once, not at every block."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter import heap, offline
from exporter.cli import build_parser
from exporter.offline import LARGE_INPUT_BYTES

# A child reads the file as report does (blocks, each lower-cased) and prints its minor page faults.
_READ = """
import resource, sys
from exporter import heap
from exporter.offline import read_blocks
if sys.argv[2] == "keep":
    assert heap.keep_freed_blocks()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with open(sys.argv[1], "rb") as stream:
    for block in read_blocks(stream):
        block.lower()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(path: Path, mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _READ, str(path), mode], capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is the one told")
def test_a_large_read_touches_fresh_pages_once_when_freed_blocks_are_kept(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    line = b"Dec  3 10:00:00 mx postfix/smtpd[1]: connect from mail-ej1-f65.google.com[209.85.218.65]\n"
    log.write_bytes(line * (LARGE_INPUT_BYTES // len(line) + 1))
    freed, kept = _faults(log, "free"), _faults(log, "keep")
    # 16 MiB read in 256 KiB blocks: handed back at each free, each block's copies touch fresh pages (thousands
    # of faults); kept, the same few pages serve every block.
    assert freed > 4 * kept, (freed, kept)
    assert kept < 2000, kept


def test_report_keeps_freed_blocks_only_for_a_large_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []
    monkeypatch.setattr(heap, "keep_freed_blocks", lambda: asked.append(True) or True)
    small, large = tmp_path / "small.log", tmp_path / "large.log"
    small.write_bytes(b"x\n")
    with large.open("wb") as stream:
        stream.truncate(LARGE_INPUT_BYTES)  # sparse: its size is what counts
    args = build_parser("report").parse_args(["report", "x"])
    offline.build_report([str(small)], offline._analyser(args))
    assert asked == []
    offline.build_report([str(small), str(large)], offline._analyser(args))
    assert asked == [True]
