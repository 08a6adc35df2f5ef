"""The benchmark's corpus generator: the same seed writes the same logs, and its ground truth is exactly what
`classify` finds in them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO

# bench/ is a folder of the checkout, not an installed package.
from bench.generate import Truth, generate

SAMPLE_LINES = 20_000


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Truth]:
    folder = tmp_path_factory.mktemp("corpus")
    postfix, exim = folder / "postfix.log", folder / "exim.log"
    return postfix, exim, generate(postfix, exim, SAMPLE_LINES)


def classified(path: Path) -> tuple[Counter[str], Counter[str]]:
    """Deliveries by status and rejections by category, from `classify` run as a user would."""
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "classify", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    statuses: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    for line in out.splitlines():
        event = json.loads(line)
        if event["scope"] != "recipient":
            continue
        statuses[event["status"]] += 1
        if event["category"] is not None:
            categories[event["category"]] += 1
    return statuses, categories


def test_same_seed_writes_the_same_logs(sample: tuple[Path, Path, Truth], tmp_path: Path) -> None:
    postfix, exim, truth = sample
    again = generate(tmp_path / "postfix.log", tmp_path / "exim.log", SAMPLE_LINES)
    assert (tmp_path / "postfix.log").read_bytes() == postfix.read_bytes()
    assert (tmp_path / "exim.log").read_bytes() == exim.read_bytes()
    assert again == truth


def test_another_seed_writes_other_logs(sample: tuple[Path, Path, Truth], tmp_path: Path) -> None:
    postfix, _, _ = sample
    generate(tmp_path / "postfix.log", tmp_path / "exim.log", SAMPLE_LINES, seed=1)
    assert (tmp_path / "postfix.log").read_bytes() != postfix.read_bytes()


def test_corpus_has_the_traffic_mix_of_a_busy_mx(sample: tuple[Path, Path, Truth]) -> None:
    _, _, truth = sample
    at_google = truth.deliveries["sent"] + truth.deliveries["deferred"] + truth.deliveries["bounced"]
    refused = truth.deliveries["deferred"] + truth.deliveries["bounced"]
    assert SAMPLE_LINES <= truth.postfix_lines < SAMPLE_LINES + 20
    assert 0.07 < at_google / truth.postfix_lines < 0.09
    assert 0.27 < refused / at_google < 0.33
    assert truth.deliveries["expired"] > 0
    assert sum(truth.categories.values()) == refused


@pytest.mark.parametrize("mta", ["postfix", "exim"])
def test_ground_truth_is_what_classify_finds(sample: tuple[Path, Path, Truth], mta: str) -> None:
    postfix, exim, truth = sample
    statuses, categories = classified(postfix if mta == "postfix" else exim)
    assert dict(statuses) == {k: v for k, v in truth.deliveries.items() if v}
    assert dict(categories) == truth.categories
