"""The rotated generations of a log file: which names in its directory are older versions of it, and their order.

Pure functions over a directory listing, except `listing`, which reads one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final

from exporter import patterns
from exporter.compressed import COMPRESSED_SUFFIXES

SEPARATORS: Final = ".-_"
"""What stands between a log's name and its rotation suffix: mail.log.1, mail.log-20261129, mail.log_1."""
TEMPORARY: Final = ".tmp"
_NUMBERED: Final = patterns.compile(r"[.\-_]([0-9]{1,4})")
_SUFFIX: Final = patterns.compile(r"[.\-_][0-9]+$")


def listing(directory: str) -> list[str]:
    """The names in a directory; empty when it cannot be listed."""
    try:
        return os.listdir(directory or ".")
    except OSError:
        return []


def rotated(base: str, names: Iterable[str]) -> list[str]:
    """The names that are rotated generations of `base`, in any order: not the temporary file a generation is
    compressed into (Kubernetes writes 0.log.20261203-135700.gz from 0.log.20261203-135700.tmp)."""
    return [
        n
        for n in names
        if len(n) > len(base)
        and n.startswith(base)
        and n[len(base)] in SEPARATORS
        and not n.endswith(TEMPORARY)
    ]


def age(base: str, name: str) -> tuple[int, int, str]:
    """Sort key of a rotated generation, older first: name.3 < name.2 < name.1, name-20261128 < name-20261129, and
    Kubernetes' 0.log.20261203-135700 < 0.log.20261203-140200 (a compression suffix does not count)."""
    rest = name[len(base) :]
    for suffix in COMPRESSED_SUFFIXES:
        rest = rest.removesuffix(suffix)
    numbered = _NUMBERED.fullmatch(rest)
    if numbered:
        return (0, -int(numbered.group(1)), "")
    return (1, 0, rest)


def oldest_first(base: str, names: Iterable[str]) -> list[str]:
    """The rotated generations of `base` among `names`, oldest first, by the rotation's naming (not by mtime:
    a compressed copy gets a new mtime)."""
    return sorted(rotated(base, names), key=lambda n: age(base, n))


def newer_than(base: str, than: str | None, names: Iterable[str]) -> list[str]:
    """The rotated generations of `base` newer than the generation `than` (all of them for None), oldest first."""
    found = oldest_first(base, names)
    if than is None:
        return found
    limit = age(base, than)
    return [n for n in found if n != than and age(base, n) > limit]


def siblings(path: str) -> list[str]:
    """The rotated generations beside `path`, as paths, oldest first."""
    directory, base = os.path.split(path)
    return [os.path.join(directory, n) for n in oldest_first(base, listing(directory))]


def family(path: str) -> str | None:
    """The live file whose rotated generation `path` is by its name (mail.log for mail.log.1 or
    mail.log-20261129.gz), or None when the name is not a generation's."""
    rest = path
    for suffix in COMPRESSED_SUFFIXES:
        rest = rest.removesuffix(suffix)
    base = _SUFFIX.sub("", rest)
    return base if base != rest and os.path.basename(base) else None
