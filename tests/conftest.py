"""Shared pytest configuration: the slow marker and the corpus of Gmail replies."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@dataclass(frozen=True)
class CorpusReply:
    """One row of tests/data/replies.tsv: a Gmail reply and the category it must get."""

    id: str
    code: str
    enhanced_code: str
    category: str
    stage: str
    origin: str
    text: str


def load_corpus() -> list[CorpusReply]:
    with open(TESTS / "data" / "replies.tsv", encoding="utf-8", newline="") as handle:
        return [CorpusReply(**row) for row in csv.DictReader(handle, delimiter="\t")]


CORPUS = load_corpus()
REFUSALS = [r for r in CORPUS if r.category]
