"""Composing unlike the training data: the composer's own memorisation filter.

A low-order melody model rarely reproduces a training tune, but a cue has many parts and minutes of material, and now
and then a passage resembles a training work as closely as two unrelated folk tunes resemble each other. Before a
composition is handed over, its melody lines are compared with the model's training works by the catalog's own
symbolic detector (``library/fingerprints/symbolic.py``). One that scores at or above ``FILTER_THRESHOLD`` is
discarded and the cue is composed again from a seed derived from the requested one, up to ``MAX_ATTEMPTS`` times.
Accompaniment figures follow the spec more than the seed, so a few specs resemble a work whatever the seed; then the
least similar attempt is handed over, and the catalog's check decides on it as on any cue.

The threshold sits below the detector's default (8.0): the catalog's check weighs n-grams over its whole reference
corpus, where the same passage can score somewhat higher than against the training works alone. Everything here is
deterministic: the same spec, seed, model and training works give the same attempts and the same bytes.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from generation.composer.compose import Composition, compose
from generation.composer.model import MelodyModel
from generation.composer.spec import GenerationSpec
from library.fingerprints import FingerprintError
from library.fingerprints.symbolic import DEFAULT_THRESHOLD, SymbolicIndex, symbolic_fingerprint
from library.music import MusicError
from library.music.midi import midi_read

FILTER_THRESHOLD = round(0.85 * DEFAULT_THRESHOLD, 2)
MAX_ATTEMPTS = 12
# As many candidates as the catalog's check aligns: the best alignment is not always the best-ranked candidate.
QUERY_LIMIT = 10


@dataclass(frozen=True)
class GuardedComposition:
    composition: Composition
    seed: int  # the seed the handed-over composition was made from: the requested one, or one derived from it
    rejected: tuple[dict, ...]  # each discarded attempt: {"seed", "reference_id", "score"}
    exhausted: bool = False  # every attempt resembled a work: the least similar one was handed over

    @property
    def attempts(self) -> int:
        return MAX_ATTEMPTS if self.exhausted else len(self.rejected) + 1

    @property
    def report(self) -> dict:
        """What the generation record states about the filter (JSON-safe)."""
        return {
            "threshold": FILTER_THRESHOLD,
            "composed_seed": str(self.seed),
            "attempts": self.attempts,
            "rejected": list(self.rejected),
            "exhausted": self.exhausted,
        }


def attempt_seed(seed: int, attempt: int) -> int:
    """The seed of attempt ``attempt``: the requested seed first, then the first 8 bytes of SHA-256("seed/attempt")."""
    if attempt == 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"{seed}/{attempt}".encode()).digest()[:8], "big")


def compose_unlike(
    spec: GenerationSpec, *, seed: int, model: MelodyModel, training: SymbolicIndex, mix: str = "full"
) -> GuardedComposition:
    """Compose ``spec`` so that no melody line resembles a work of ``training`` (a frozen index of the model's training
    works); when every attempt does, the least similar one (the earliest of equals)."""
    rejected: list[dict] = []
    least: tuple[float, Composition, int] | None = None
    for attempt in range(MAX_ATTEMPTS):
        current = attempt_seed(seed, attempt)
        composition = compose(spec, seed=current, model=model, mix=mix)
        nearest = nearest_training_work(composition.midi, training)
        if nearest is None or nearest[1] < FILTER_THRESHOLD:
            return GuardedComposition(composition, current, tuple(rejected))
        rejected.append({"seed": str(current), "reference_id": nearest[0], "score": nearest[1]})
        if least is None or nearest[1] < least[0]:
            least = (nearest[1], composition, current)
    assert least is not None  # MAX_ATTEMPTS > 0
    return GuardedComposition(least[1], least[2], tuple(rejected), exhausted=True)


def nearest_training_work(midi: bytes, training: SymbolicIndex) -> tuple[int, float] | None:
    """The training work most like ``midi`` and its symbolic score, or None when there is nothing to compare (an
    empty index, or a cue without melodic content, such as drums alone)."""
    try:
        fingerprint = symbolic_fingerprint(midi_read(midi, max_duration_seconds=math.inf))
        matches = training.query(fingerprint, limit=QUERY_LIMIT)
    except (FingerprintError, MusicError):
        return None
    if not matches:
        return None
    return matches[0].reference_id, matches[0].score
