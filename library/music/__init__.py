"""Pure music code (no Django): reading and analysing Standard MIDI Files, rendering them to audio."""


class MusicError(ValueError):
    """Input that cannot be read, analysed or rendered. ``code`` is stable and shown to API users."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
