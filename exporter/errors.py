"""Errors a user can fix: they name the file, line and key at fault."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(Exception):
    """A config, rules or web-config file (or flag) the exporter cannot use."""

    def __init__(self, file: str, line: int | None, key: str | None, message: str) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.key = key
        self.message = message

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the choice closest to a mistyped word, or '' when none is close."""
    import difflib  # only for a mistake: not at every start-up

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class WorkerError(Exception):
    """A process that `report --jobs` forked failed: what it was reading and why."""
