"""Where a source resumes, as typed values checked when read back from the state file.

A position is trusted only after `from_json` has accepted it: a state file written by another version, edited by
hand or damaged on disk gives ValueError here, never a wrong offset or an exception in a reader thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from exporter import patterns
from exporter.sources.identity import FINGERPRINT_BYTES, FileId

MAX_CURSOR_CHARS: Final = 4096
"""A journal cursor is a few hundred characters; anything longer is not one."""
MAX_PATH_CHARS: Final = 4096
_HEX64: Final = patterns.compile(r"[0-9a-f]{64}")


def _int(data: dict[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    # bool is an int subclass: `true` is not a device number.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 1 << 64:
        raise ValueError(f"{where}.{key}: expected a whole number >= 0, got {value!r}")
    return value


def _mapping(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    return data


@dataclass(frozen=True, slots=True)
class FilePosition:
    """Where reading a followed file resumes: which file (device, inode and its first bytes) and how far.

    `offset` is just after the last line delivered; `discarding` is true while the rest of an overlong line is
    being dropped. `path` is where the file was found (the target of a symbolic link, or a rotated name), so a
    restart looks for it there too. `draining` is the position in a rotated file still being read when the
    position was taken: it is finished first on resume.
    """

    ident: FileId
    offset: int
    discarding: bool = False
    path: str = ""
    draining: FilePosition | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": "file",
            "dev": self.ident.dev,
            "ino": self.ident.ino,
            "fingerprint": self.ident.fingerprint,
            "fingerprint_len": self.ident.fingerprint_len,
            "offset": self.offset,
            "discarding": self.discarding,
            "path": self.path,
        }
        if self.draining is not None:
            data["draining"] = self.draining.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "position", *, nested: bool = False) -> FilePosition:
        """Raises ValueError naming the first field that is not what a position holds."""
        data = _mapping(data, where)
        if data.get("kind") != "file":
            raise ValueError(f"{where}.kind: expected 'file', got {data.get('kind')!r}")
        fingerprint_len = _int(data, "fingerprint_len", where)
        if fingerprint_len > FINGERPRINT_BYTES:
            raise ValueError(f"{where}.fingerprint_len: {fingerprint_len} is over {FINGERPRINT_BYTES}")
        fingerprint = data.get("fingerprint")
        if not isinstance(fingerprint, str) or not _HEX64.fullmatch(fingerprint):
            raise ValueError(f"{where}.fingerprint: expected 64 hexadecimal digits, got {fingerprint!r}")
        offset = _int(data, "offset", where)
        discarding = data.get("discarding", False)
        if not isinstance(discarding, bool):
            raise ValueError(f"{where}.discarding: expected true or false, got {discarding!r}")
        path = data.get("path", "")
        if not isinstance(path, str) or len(path) > MAX_PATH_CHARS or "\x00" in path:
            raise ValueError(f"{where}.path: expected a file name, got {str(path)[:80]!r}")
        draining_data = data.get("draining")
        draining = None
        if draining_data is not None:
            if nested:
                raise ValueError(
                    f"{where}.draining: a rotated file being drained has no draining file of its own"
                )
            draining = cls.from_json(draining_data, f"{where}.draining", nested=True)
        ident = FileId(_int(data, "dev", where), _int(data, "ino", where), fingerprint, fingerprint_len)
        return cls(ident, offset, discarding, path, draining)


@dataclass(frozen=True, slots=True)
class JournalPosition:
    """Where reading the systemd journal resumes: the cursor of the last entry read."""

    cursor: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": "journal", "cursor": self.cursor}

    @staticmethod
    def accepts(cursor: Any) -> bool:
        return isinstance(cursor, str) and 0 < len(cursor) <= MAX_CURSOR_CHARS and "\n" not in cursor

    @classmethod
    def from_json(cls, data: Any, where: str = "position") -> JournalPosition:
        data = _mapping(data, where)
        if data.get("kind") != "journal":
            raise ValueError(f"{where}.kind: expected 'journal', got {data.get('kind')!r}")
        cursor = data.get("cursor")
        if not cls.accepts(cursor):
            raise ValueError(f"{where}.cursor: expected a journal cursor, got {str(cursor)[:80]!r}")
        return cls(cursor)


Position = FilePosition | JournalPosition


def position_from_json(data: Any, where: str = "position") -> Position:
    """A saved position of either kind; raises ValueError."""
    kind = _mapping(data, where).get("kind")
    if kind == "journal":
        return JournalPosition.from_json(data, where)
    return FilePosition.from_json(data, where)
