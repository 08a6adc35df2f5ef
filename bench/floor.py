"""The pure-Python floor under `report`: read a log in blocks and run the byte-level prefilter over every block,
which no line can skip, and nothing else: no parsing, no counting. Prints {"lines": N, "candidates": M}.

Whatever a Python `report` does to the lines that concern Google comes on top of this, so its lines/s bound what
any pure-Python implementation of our approach can reach on the same file."""

from __future__ import annotations

import json
import sys

from exporter.analyse import Analyser
from exporter.offline import read_blocks
from exporter.rules import Rules


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    analyser = Analyser(Rules(()))  # the prefilter needs no rules
    lines = candidates = 0
    for path in paths:
        with open(path, "rb") as stream:
            for block in read_blocks(stream):
                count, spans = analyser.prefilter(block)
                lines += count
                candidates += count if spans is None else len(spans)
    json.dump({"lines": lines, "candidates": candidates}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
