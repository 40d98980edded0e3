"""Progress of long commands on a terminal or in a log."""


class ProgressBar:
    """A one-line progress bar on a terminal; a line per work otherwise (logs, CI)."""

    WIDTH = 30

    def __init__(self, total: int, out) -> None:
        self.total, self.done, self.out = total, 0, out
        self.live = out.isatty()

    def step(self, label: str) -> None:
        self.done += 1
        share = self.done / self.total
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        name = label if len(label) <= 50 else "..." + label[-47:]
        if self.live:
            self.out.write(f"\r[{bar}] {self.done}/{self.total} {share:4.0%} {name:<50}", ending="")
            self.out.flush()
        else:
            self.out.write(f"[{bar}] {self.done}/{self.total} {name}")

    def finish(self) -> None:
        if self.live:
            self.out.write("")
