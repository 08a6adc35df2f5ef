"""re.compile() with what the compiler makes of each pattern kept from one run to the next.

CPython compiles every pattern afresh in every process, and the exporter's hundred-odd patterns are a quarter of
a command's start: `report` pays for them before it reads a line. What sre runs is a program that depends only on
the pattern, its flags and the interpreter, so the last run's programs are kept in the `__pycache__` folder
beside this module, in a file named after the interpreter's version and sre's MAGIC (as .pyc files are, for the
same reason), with a CRC of its contents. sre checks each program before it takes it; a file that is damaged,
foreign or unreadable, a program it refuses, or an interpreter whose compiler works otherwise, falls back to
re.compile, which gives the same Pattern (tests/test_patterns.py compares them, program and all)."""

from __future__ import annotations

import _sre  # type: ignore[import-not-found]  # the engine re.compile() hands its programs to
import atexit
import marshal
import os
import re
import sys
import zlib
from typing import Any, AnyStr, Final

from exporter import cachefile

MAX_PATTERNS: Final = 4096
"""Programs kept; past that the file keeps only those of the last run (a rules file that keeps changing adds
patterns that no run asks for again)."""
CACHE: Final = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "__pycache__",
    f"patterns.{sys.implementation.cache_tag}.{sys.hexversion:x}.{_sre.MAGIC}.marshal",
)

Entry = tuple[int, list[int], int, dict[str, int], tuple[str | None, ...]]
"""What _sre.compile() takes besides the pattern: flags, program, groups, group index, index group."""

_known: dict[tuple[str | bytes, int], Entry] | None = None
"""The kept programs, once read."""
_made: dict[tuple[str | bytes, int], Entry] = {}
"""The programs this run made and asked for: written at exit when some were not kept."""
_missed = False


def compile(pattern: AnyStr, flags: int = 0) -> re.Pattern[AnyStr]:
    """re.compile(pattern, flags), from the kept program when there is one."""
    global _known, _missed
    flags = int(flags)
    if _known is None:
        _known = _load(CACHE)
    key = (pattern, flags)
    entry = _known.get(key)
    if entry is not None:
        try:
            compiled: re.Pattern[AnyStr] = _sre.compile(pattern, *entry)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            pass
        else:
            _made[key] = entry
            return compiled
    made = _program(pattern, flags)
    if made is None:
        return re.compile(pattern, flags)
    _made[key] = made
    if not _missed:
        _missed = True
        atexit.register(_keep)
    return re.compile(pattern, flags)


def _program(pattern: str | bytes, flags: int) -> Entry | None:
    """What re.compile() hands _sre.compile() for the pattern (the steps of re._compiler.compile), or None where
    the interpreter's compiler is not laid out so."""
    if flags & re.DEBUG:
        return None
    try:
        from re import _compiler, _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(pattern, flags)
        program = [int(op) for op in _compiler._code(parsed, flags)]
        state = parsed.state
        index = {str(name): int(number) for name, number in state.groupdict.items()}
        names: list[str | None] = [None] * state.groups
        for name, number in index.items():
            names[number] = name
        return int(flags | state.flags), program, int(state.groups - 1), index, tuple(names)
    except Exception:  # an interpreter whose private compiler differs: no program kept, re.compile as ever
        return None


def _load(path: str) -> dict[tuple[str | bytes, int], Entry]:
    """The kept programs, or none from a file that is missing, damaged or not one."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        if len(data) < 4 or zlib.crc32(data[4:]) != int.from_bytes(data[:4], "little"):
            return {}
        body = data[4:]
        kept: Any = marshal.loads(body)
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    if not isinstance(kept, dict):
        return {}
    return {k: v for k, v in kept.items() if _is_entry(k, v)}


def _is_entry(key: Any, value: Any) -> bool:
    return (
        isinstance(key, tuple)
        and len(key) == 2
        and isinstance(key[0], str | bytes)
        and isinstance(key[1], int)
        and isinstance(value, tuple)
        and len(value) == 5
        and isinstance(value[0], int)
        and isinstance(value[1], list)
        and isinstance(value[2], int)
        and isinstance(value[3], dict)
        and isinstance(value[4], tuple)
    )


def _keep() -> None:
    """Writes the programs kept and those this run made (at exit, once some were missing)."""
    kept = dict(_known or {})
    if len(kept) + len(_made) > MAX_PATTERNS:
        kept = {}
    kept.update(_made)
    body = marshal.dumps(kept)
    cachefile.keep(CACHE, zlib.crc32(body).to_bytes(4, "little") + body)
