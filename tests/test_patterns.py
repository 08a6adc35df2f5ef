"""exporter.patterns: a pattern compiled from the kept program is the Pattern re.compile() makes (Pattern equality
compares the program too), for every pattern the exporter compiles; a kept file that is damaged, foreign or
written by no one falls back to re.compile(), and a folder that cannot be written costs nothing."""

from __future__ import annotations

import ast
import marshal
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from conftest import REPO

from exporter import patterns


@pytest.fixture
def kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kept programs in a file of the test's own, read afresh."""
    path = tmp_path / "__pycache__" / "patterns.marshal"
    monkeypatch.setattr(patterns, "CACHE", str(path))
    monkeypatch.setattr(patterns, "_known", None)
    monkeypatch.setattr(patterns, "_made", {})
    return path


def all_patterns() -> list[tuple[str | bytes, int]]:
    """Every pattern the exporter's modules compile as they are imported and as a report runs, as a child process
    that kept them in `kept` wrote them."""
    program = (
        "import io, contextlib, pkgutil, importlib, exporter\n"
        "from exporter import patterns\n"
        "for m in pkgutil.walk_packages(exporter.__path__, 'exporter.'):\n"
        "    if m.name != 'exporter.__main__': importlib.import_module(m.name)\n"
        "from exporter.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['report', '--format', 'json', 'tests/fixtures/logs/postfix.log'])\n"
        "print(repr(sorted(patterns._made, key=repr)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    found: list[tuple[str | bytes, int]] = ast.literal_eval(done.stdout)
    return found


def test_every_pattern_from_a_kept_program_is_the_one_re_compile_makes(kept: Path) -> None:
    found = all_patterns()
    assert len(found) > 60
    for pattern, flags in found:
        patterns.compile(pattern, flags)
    patterns._keep()
    assert kept.exists()
    patterns._known = None
    patterns._made = {}
    for pattern, flags in found:
        ours = patterns.compile(pattern, flags)
        assert (pattern, flags) in patterns._known  # from the file, not compiled again
        assert ours == re.compile(pattern, flags)
        assert (ours.flags, ours.groups, ours.groupindex) == (
            re.compile(pattern, flags).flags,
            re.compile(pattern, flags).groups,
            re.compile(pattern, flags).groupindex,
        )


def write(path: Path, body: bytes, crc: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((zlib.crc32(body) if crc is None else crc).to_bytes(4, "little") + body)


SAMPLE = (rb"(?P<stamp>[A-Z][a-z]{2}) (?P<host>\S+)", 0)


@pytest.mark.parametrize(
    "damage",
    ["truncated", "bit flipped", "not marshal", "not a dict", "wrong shapes", "program refused", "empty"],
)
def test_a_damaged_kept_file_falls_back_to_re_compile(kept: Path, damage: str) -> None:
    patterns.compile(*SAMPLE)
    patterns._keep()
    good = kept.read_bytes()
    body = good[4:]
    if damage == "truncated":
        kept.write_bytes(good[: len(good) // 2])
    elif damage == "bit flipped":
        kept.write_bytes(good[:-3] + bytes([good[-3] ^ 1]) + good[-2:])
    elif damage == "not marshal":
        write(kept, b"\xff" * 40)
    elif damage == "not a dict":
        write(kept, marshal.dumps([1, 2, 3]))
    elif damage == "wrong shapes":
        write(kept, marshal.dumps({SAMPLE: ("x", [1], 0, {}, ())}))
    elif damage == "program refused":
        entry = marshal.loads(body)[SAMPLE]
        write(kept, marshal.dumps({SAMPLE: (entry[0], [999, 999, 999], *entry[2:])}))
    elif damage == "empty":
        kept.write_bytes(b"")
    patterns._known = None
    patterns._made = {}
    assert patterns.compile(*SAMPLE) == re.compile(*SAMPLE)
    assert patterns.compile(*SAMPLE).match(b"Nov mx1").group("host") == b"mx1"


def test_a_kept_file_grows_to_its_bound_then_keeps_only_the_last_run(
    kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patterns, "MAX_PATTERNS", 3)
    for text in ("a+", "b+"):
        patterns.compile(text)
    patterns._keep()
    patterns._known, patterns._made = None, {}
    patterns.compile("c+")
    patterns._keep()
    assert {k[0] for k in marshal.loads(kept.read_bytes()[4:])} == {"a+", "b+", "c+"}
    patterns._known, patterns._made = None, {}
    patterns.compile("d+")
    patterns.compile("a+")
    patterns._keep()
    assert {k[0] for k in marshal.loads(kept.read_bytes()[4:])} == {"d+", "a+"}


def test_a_folder_that_cannot_be_made_costs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its place under a regular file (as root, permissions would not stop the write)."""
    blocker = tmp_path / "exporter"
    blocker.write_text("a file where the package folder would be")
    monkeypatch.setattr(patterns, "CACHE", str(blocker / "__pycache__" / "patterns.marshal"))
    monkeypatch.setattr(patterns, "_known", None)
    monkeypatch.setattr(patterns, "_made", {})
    assert patterns.compile("x+") == re.compile("x+")
    patterns._keep()
    assert sorted(os.listdir(tmp_path)) == ["exporter"]


def test_a_kept_file_is_named_after_the_interpreter_and_the_engine() -> None:
    name = os.path.basename(patterns.CACHE)
    assert sys.implementation.cache_tag in name and f"{sys.hexversion:x}" in name
    assert os.path.dirname(patterns.CACHE) == os.path.join(os.path.dirname(patterns.__file__), "__pycache__")
