"""The built-in composer and what it reads: prompts, timecodes, specs, the melody model and its training. Pure Python
on pretty_midi and music21, no Django. Given a spec, a seed and a trained model it writes byte-identical MIDI."""


class ComposerError(ValueError):
    """Input the composer refuses. ``code`` is stable and shown to API users, e.g. ``tempo_out_of_range``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"
