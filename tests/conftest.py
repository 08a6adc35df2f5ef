"""Shared pytest configuration: the slow marker and the corpus of Gmail replies."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import NOBODY
from fixtures.gmail_lookalike import Reply, load_replies

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("RUN_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow scenario: make test-slow runs it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


CorpusReply = Reply
"""One row of tests/data/replies.tsv: a Gmail reply, the stage Gmail gives it at, the category it must get."""


def load_corpus() -> list[CorpusReply]:
    return list(load_replies(TESTS / "data" / "replies.tsv").values())


CORPUS = load_corpus()
REFUSALS = [r for r in CORPUS if r.category]


@contextlib.contextmanager
def _reachable_by_nobody(*places: Path) -> Iterator[None]:
    """Lets nobody pass through the directories above `places` (search permission only, no listing) while the
    block runs: a fresh clone under a private directory (mktemp -d makes it 0700) would leave the exporter run as
    nobody unable to import itself from the checkout and its venv."""
    changed: list[tuple[Path, int]] = []
    for place in places:
        for directory in place.resolve().parents:
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH and directory not in (d for d, _ in changed):
                changed.append((directory, mode))
                directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for directory, mode in reversed(changed):
            directory.chmod(stat.S_IMODE(mode))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged user nobody can enter and write (pytest's own is private to root), with the
    checkout and the interpreter's packages reachable by nobody."""
    path = Path(tempfile.mkdtemp(prefix="gre-fault-"))
    path.chmod(0o755)
    os.chown(path, NOBODY, NOBODY)
    try:
        with _reachable_by_nobody(REPO / "exporter", Path(sys.prefix) / "lib"):
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
