"""Errors a user can fix: they name the file, line and key at fault."""

from __future__ import annotations


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
