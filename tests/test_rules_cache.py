"""The bundled rules come from a cache beside the file when its bytes are the ones parsed last, so that a command
starts without PyYAML: equal to the parse, ignored when stale, damaged or foreign."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.rules import Rule, Rules, builtin_rules_path, load_rules


def bundled_copy(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    shutil.copyfile(builtin_rules_path(), path)
    return path


def lines(rules: Rules) -> list[Rule]:
    """The rules with their line but not their file's path."""
    return [dataclasses.replace(r, source=r.source.rpartition(":")[2]) for r in rules.rules]


def cache_of(path: Path) -> Path:
    return path.parent / "__pycache__" / (path.name + ".json")


def test_the_cache_gives_the_rules_the_file_gives(tmp_path: Path) -> None:
    path = bundled_copy(tmp_path)
    parsed = load_rules(builtin=str(path))
    assert cache_of(path).is_file()
    cached = load_rules(builtin=str(path))
    assert cached.rules == parsed.rules
    assert cached.reasons == parsed.reasons
    assert len(parsed.rules) > 50


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: "",
        lambda text: text[: len(text) // 2],
        lambda text: "[1, 2, 3]",
        lambda text: json.dumps({**json.loads(text), "key": "1:0:00000000"}),
        lambda text: json.dumps({**json.loads(text), "rules": [["x"] * 9]}),
        lambda text: json.dumps(
            {
                **json.loads(text),
                "rules": [[*row[:1], "no_such_category", *row[2:]] for row in json.loads(text)["rules"]],
            }
        ),
    ],
    ids=["empty", "cut", "not-a-mapping", "another-file", "bad-row", "bad-category"],
)
def test_a_damaged_or_foreign_cache_is_ignored(tmp_path: Path, damage: object) -> None:
    path = bundled_copy(tmp_path)
    expected = load_rules(builtin=str(path)).rules
    cache = cache_of(path)
    cache.write_text(damage(cache.read_text()))  # type: ignore[operator]
    assert load_rules(builtin=str(path)).rules == expected
    assert json.loads(cache.read_text())["rules"]  # written again from the parse


def test_an_edited_file_is_parsed_again(tmp_path: Path) -> None:
    path = bundled_copy(tmp_path)
    load_rules(builtin=str(path))
    text = path.read_text()
    path.write_text(text.replace("category: rate_limit", "category: reputation", 1))
    edited = load_rules(builtin=str(path))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    shutil.copyfile(path, fresh / "rules.yml")
    assert lines(edited) == lines(load_rules(builtin=str(fresh / "rules.yml")))
    assert lines(edited) != lines(load_rules(builtin=builtin_rules_path()))


def test_a_folder_that_cannot_be_written_still_gives_the_rules(tmp_path: Path) -> None:
    path = bundled_copy(tmp_path)
    (tmp_path / "__pycache__").write_text("a file where the folder would be")
    assert lines(load_rules(builtin=str(path))) == lines(load_rules(builtin=builtin_rules_path()))


def test_report_starts_without_pyyaml_once_cached(tmp_path: Path) -> None:
    load_rules()  # leaves the bundled file's cache, as the first command does
    log = tmp_path / "mail.log"
    log.write_text("")
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['exporter', 'report', '--jobs', '1', {str(log)!r}]\n"
        "try:\n    runpy.run_module('exporter', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('yaml' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "False"
