"""Pure similarity code (no Django): acoustic (Chromaprint) and symbolic (MIDI melody) fingerprints, their indexes
and matchers, and the calibration of their thresholds."""

# Part of every similarity report: a change to how fingerprints are made or scored must change this string, so that
# a report always says which engine produced it and old thresholds are not applied to new scores by mistake.
ENGINE_VERSION = "cueledger-fingerprints/2"


class FingerprintError(ValueError):
    """Input that cannot be fingerprinted or matched. ``code`` is stable and shown to API users."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
