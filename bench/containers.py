"""Writing a mail log as container runtimes write what a process prints: Docker's json-file driver and the CRI
format of Kubernetes (the benchmark's container logs and the tests' alike).

The escaping follows Docker's json-file driver (`<`, `>`, `&` and control characters as \\u00XX, `\\n`, `\\r`,
invalid UTF-8 as \\ufffd, U+2028 and U+2029 escaped), and lines are cut into parts the way the runtimes cut a long
line: Docker leaves the final `\\n` off every part but the last, CRI tags every part but the last `P`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

TIME = "2026-12-03T13:57:16.123456789Z"


def _escaped(text: bytes) -> str:
    out: list[str] = []
    for char in text.decode("utf-8", "replace"):
        code = ord(char)
        if char in '\\"':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or char in "<>&" or char in "\u2028\u2029":
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def docker_entry(text: bytes, *, stream: str = "stdout", time: str = TIME) -> bytes:
    """One json-file line (with its newline) for a part of a line; `text` ends with b"\\n" when it is the last."""
    log = f'"log":"{_escaped(text)}",' if text else ""
    return f'{{{log}"stream":"{stream}","time":"{time}"}}\n'.encode()


def _parts(lines: bytes, part: int) -> list[list[bytes]]:
    """Each line a process wrote (ending with a newline), cut into the parts a runtime writes it in."""
    found = []
    for line in lines.splitlines(keepends=True):
        body = line.removesuffix(b"\n")
        found.append([body[i : i + part] for i in range(0, len(body), part)] or [b""])
    return found


def docker(lines: bytes, *, stream: str = "stdout", part: int = 16 * 1024, time: str = TIME) -> bytes:
    """The json-file lines for the lines a process wrote (each ending with a newline), long ones in parts."""
    return b"".join(
        docker_entry(piece + b"\n" if i == len(pieces) - 1 else piece, stream=stream, time=time)
        for pieces in _parts(lines, part)
        for i, piece in enumerate(pieces)
    )


def cri_entry(text: bytes, *, tag: str = "F", stream: str = "stdout", time: str = TIME) -> bytes:
    """One CRI line (with its newline)."""
    return f"{time} {stream} {tag} ".encode() + text + b"\n"


def cri(lines: bytes, *, stream: str = "stdout", part: int = 16 * 1024, time: str = TIME) -> bytes:
    """The CRI lines for the lines a process wrote (each ending with a newline), long ones in P parts."""
    return b"".join(
        cri_entry(piece, tag="F" if i == len(pieces) - 1 else "P", stream=stream, time=time)
        for pieces in _parts(lines, part)
        for i, piece in enumerate(pieces)
    )


def wrap_file(source: Path, target: Path, wrap: Callable[[bytes], bytes]) -> None:
    """Writes `source`'s lines to `target` as `wrap` (docker or cri) writes them, a chunk of lines at a time."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.readlines(1 << 20):
            dst.write(wrap(b"".join(chunk)))
