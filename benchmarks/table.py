"""The table every benchmark prints: a row a measure, columns aligned, a rule under the header."""

from collections.abc import Iterable, Sequence


def print_aligned(header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    lines = [tuple(header)] + [tuple(str(cell) for cell in row) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for number, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
        if number == 0:
            print("  ".join("-" * width for width in widths))
