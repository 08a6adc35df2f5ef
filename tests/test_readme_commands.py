"""Every exporter command that README.md, docs/ and the runbook show in a shell block works as shown.

Commands that follow a log forever (`run`, the default) are checked with `check-config`, which takes the same flags
and stops after checking them. Paths that exist only on a mail server are replaced by test files: the mail log by
a real Postfix log, the config by the one deploy/systemd installs there, `mine.yml` by README's rules example.
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

DOCUMENTS = [REPO / "README.md", *sorted(REPO.glob("docs/*.md")), *sorted(REPO.glob("deploy/**/*.md"))]
EXPORTER = "gmail-rejection-exporter"
POSTFIX_LOG = REPO / "tests" / "fixtures" / "logs" / "postfix.log"
SYSTEMD_CONFIG = REPO / "deploy" / "systemd" / "config.yml"
FENCE = re.compile(r"^```(sh|console)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Shown:
    """An exporter command as a document shows it, and the output shown after it (console blocks)."""

    document: str
    line: str
    args: tuple[str, ...]
    output: str

    def __str__(self) -> str:
        return f"{self.document}: {shlex.join(self.args)}"


def shell_lines(block: str, console: bool) -> list[tuple[str, str]]:
    """(command, output shown after it) of a code block; a console block's commands start with '$ '."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in block.splitlines():
        if console and not raw.startswith("$ ") and not pending:
            if found:
                found[-1] = (found[-1][0], found[-1][1] + raw + "\n")
            continue
        line = raw[2:] if console and raw.startswith("$ ") else raw
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        found.append((pending + line, ""))
        pending = ""
    return found


def exporter_args(command: str) -> tuple[str, ...] | None:
    """The exporter's arguments in a shell command line (its part of a pipe), or None if it runs no exporter."""
    for part in re.split(r"\s\|\s", command):
        words = shlex.split(part, comments=True)
        while words and (words[0] == "sudo" or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
            words.pop(0)
        if words and Path(words[0]).name == EXPORTER:
            return tuple(words[1:])
    return None


def shown_commands() -> list[Shown]:
    shown = []
    for document in DOCUMENTS:
        for kind, block in FENCE.findall(document.read_text()):
            for line, output in shell_lines(block, kind == "console"):
                args = exporter_args(line)
                if args is not None:
                    shown.append(Shown(document.relative_to(REPO).as_posix(), line.strip(), args, output))
    return shown


SHOWN = shown_commands()


def readme_rules_example() -> str:
    """The user rules file README shows (the YAML block with `disable:`)."""
    (example,) = [
        block
        for block in re.findall(r"^```yaml\n(.*?)^```", (REPO / "README.md").read_text(), re.M | re.S)
        if "disable:" in block
    ]
    return str(example)


def stand_in(word: str, tmp: Path) -> str:
    """A test file in place of a path that exists only on a mail server."""
    name = Path(word).name
    if word.startswith("/var/log/mail.log"):
        copy = tmp / name
        data = POSTFIX_LOG.read_bytes()
        copy.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return str(copy)
    if word == "/etc/gmail-rejection-exporter/config.yml":
        return str(SYSTEMD_CONFIG)
    if word == "mine.yml":
        rules = tmp / name
        rules.write_text(readme_rules_example())
        return str(rules)
    return word


def as_check(args: tuple[str, ...]) -> list[str]:
    """What to run for a shown command: `run` (also when no command is named) is checked by `check-config`."""
    if not args or args[0].startswith("-"):
        return ["check-config", *args]
    if args[0] == "run":
        return ["check-config", *args[1:]]
    return list(args)


def test_the_documents_show_every_command_a_user_types() -> None:
    commands = {as_check(shown.args)[0] for shown in SHOWN}
    assert {"check-config", "classify", "report", "check-rules"} <= commands
    assert any(shown.args[:1] == ("check-config",) and not shown.args[1].startswith("-") for shown in SHOWN)


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_a_shown_command_works_as_shown(shown: Shown, tmp_path: Path) -> None:
    args = [stand_in(word, tmp_path) for word in as_check(shown.args)]
    if shown.args[:1] == ("demo",):
        args.append("--help")  # serves until stopped: tests/test_install.py runs it
    done = subprocess.run(
        [sys.executable, "-m", "exporter", *args], cwd=tmp_path, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{shown}\n{args}\n{done.stderr}"
    if args[0] in ("classify", "report"):
        assert "authentication" in done.stdout, shown
    if shown.output.startswith("{"):
        # Printed as shown: the same keys in the same order.
        assert list(json.loads(done.stdout.splitlines()[0])) == list(json.loads(shown.output)), shown


def test_the_rules_example_checks_ok_and_a_typo_in_it_is_caught(tmp_path: Path) -> None:
    typo = tmp_path / "mine.yml"
    typo.write_text(readme_rules_example().replace("likely_unsolicited", "likely_unsolicitd"))
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check-rules", str(typo)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    line = 1 + typo.read_text().splitlines().index("disable: [likely_unsolicitd]")
    assert (done.returncode, done.stderr) == (
        2,
        f"gmail-rejection-exporter: {typo}:{line}: disable: 'likely_unsolicitd' is not a reason in the bundled "
        "rules (did you mean likely_unsolicited?)\n",
    )
