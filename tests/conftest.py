"""Shared pytest configuration: the slow marker and the corpus of Gmail replies."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged user nobody can enter and write (pytest's own is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="gre-fault-"))
    path.chmod(0o755)
    os.chown(path, NOBODY, NOBODY)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
