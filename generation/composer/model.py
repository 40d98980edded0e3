"""The melody model: an interpolated n-gram model over melodic steps, learned from a training corpus.

A step is one note of a melody line as (interval in semitones from the note before, clamped to an octave either way;
duration in quarter notes, snapped to ``DURATIONS``). The model counts which step follows each context of up to
``order`` earlier steps and mixes the orders (higher orders weigh more where they have data), so it can continue any
context, including one never seen in training. Low orders are deliberate: they learn the idiom (step sizes, leaps and
their recovery, rhythmic habits) without enough context to reproduce a training tune note for note.

The file is canonical JSON (sorted keys, no spaces), so training twice from the same inputs writes the same bytes and
the model's version, the SHA-256 of the file, is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from generation.composer import ComposerError

FORMAT = "cueledger-melody-model/1"
DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
MAX_INTERVAL = 12
# Interpolation weights of the orders, highest first; an order without data for a context passes its weight down.
_ORDER_WEIGHTS = (0.55, 0.3, 0.15)

Step = tuple[int, float]  # (interval in semitones, duration in quarter notes)


def step_of(interval: int, duration_quarters: float) -> Step:
    """Snap a raw melodic step to the model's vocabulary."""
    interval = max(-MAX_INTERVAL, min(MAX_INTERVAL, int(interval)))
    if duration_quarters <= 0:
        raise ValueError("a step needs a positive duration")
    duration = min(DURATIONS, key=lambda d: abs(math.log(d / duration_quarters)))
    return interval, duration


@dataclass
class MelodyModel:
    order: int
    vocabulary: tuple[Step, ...]
    # counts[context] = {step index: count}; a context is a tuple of step indexes, () for the unigram order.
    counts: dict[tuple[int, ...], dict[int, int]]
    training_digest: str  # SHA-256 of the training manifest the model was learned from
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_sequences(
        cls, sequences: Iterable[Sequence[Step]], *, training_digest: str, order: int = 2
    ) -> MelodyModel:
        """Count every step of every melody after each of its contexts of length 0..order."""
        if not 0 <= order < len(_ORDER_WEIGHTS):
            raise ValueError(f"order must be 0..{len(_ORDER_WEIGHTS) - 1}")
        raw: dict[tuple[Step, ...], Counter] = defaultdict(Counter)
        for melody in sequences:
            steps = [step_of(*s) for s in melody]
            for position, step in enumerate(steps):
                for length in range(order + 1):
                    if position >= length:
                        raw[tuple(steps[position - length : position])][step] += 1
        vocabulary = tuple(sorted({s for counter in raw.values() for s in counter} | {s for ctx in raw for s in ctx}))
        if not vocabulary:
            raise ComposerError("training_empty", "The training corpus gave no melody to learn from.")
        index = {s: i for i, s in enumerate(vocabulary)}
        counts = {
            tuple(index[s] for s in context): {index[s]: n for s, n in sorted(counter.items())}
            for context, counter in raw.items()
        }
        return cls(order=order, vocabulary=vocabulary, counts=counts, training_digest=training_digest)

    # --- The file --------------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        document = {
            "format": FORMAT,
            "order": self.order,
            "training_digest": self.training_digest,
            "vocabulary": [[interval, duration] for interval, duration in self.vocabulary],
            "counts": [
                [list(context), [[s, n] for s, n in sorted(successors.items())]]
                for context, successors in sorted(self.counts.items())
            ],
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> MelodyModel:
        try:
            document = json.loads(data)
            if document.get("format") != FORMAT:
                raise ValueError(f"format is {document.get('format')!r}, not {FORMAT!r}")
            vocabulary = tuple((int(i), float(d)) for i, d in document["vocabulary"])
            counts = {
                tuple(int(s) for s in context): {int(s): int(n) for s, n in successors}
                for context, successors in document["counts"]
            }
            size = len(vocabulary)
            if any(not 0 <= s < size for ctx, succ in counts.items() for s in (*ctx, *succ)):
                raise ValueError("a count names a step outside the vocabulary")
            return cls(
                order=int(document["order"]),
                vocabulary=vocabulary,
                counts=counts,
                training_digest=str(document["training_digest"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ComposerError("model_corrupt", f"The melody model file is unreadable: {exc}") from None

    @property
    def version(self) -> str:
        """The SHA-256 of the model file: what generation records name as the model's version and weights digest."""
        if "version" not in self._cache:
            self._cache["version"] = hashlib.sha256(self.to_bytes()).hexdigest()
        return self._cache["version"]

    # --- Sampling --------------------------------------------------------------------------------------------

    def transitions(self, context: Sequence[int]) -> list[tuple[int, float]]:
        """The probability of each step index after ``context`` (earlier step indexes, oldest first), ascending by
        index; probabilities sum to 1. Deterministic: the same context always gives the same list."""
        context = tuple(context[len(context) - self.order :]) if self.order else ()
        if context in self._cache:
            return self._cache[context]
        mixed: dict[int, float] = defaultdict(float)
        spare = 0.0
        for length in range(min(self.order, len(context)), -1, -1):
            weight = _ORDER_WEIGHTS[self.order - length] + spare if length < self.order else _ORDER_WEIGHTS[0]
            successors = self.counts.get(context[len(context) - length :] if length else ())
            if not successors:
                spare = weight
                continue
            spare = 0.0
            total = sum(successors.values())
            for s, n in successors.items():
                mixed[s] += weight * n / total
        norm = sum(mixed.values())
        result = [(s, p / norm) for s, p in sorted(mixed.items())]
        self._cache[context] = result
        return result

    def step(self, index: int) -> Step:
        return self.vocabulary[index]

    def index_of(self, step: Step) -> int | None:
        """The vocabulary index of a step, or None when training never saw it."""
        if "index" not in self._cache:
            self._cache["index"] = {s: i for i, s in enumerate(self.vocabulary)}
        return self._cache["index"].get(step)
