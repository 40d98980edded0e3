"""Choosing a detector's threshold from the scores of unrelated pairs, for a target false-positive rate per pair.

A pair is one cue-like query against one reference. When each reference of a corpus of n works is queried against
the others, there are n * (n - 1) ordered pairs; a detector returns scores only for its candidates, and every pair it
does not return counts as scoring below any threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_fpr: float
    measured_fpr: float
    pairs: int
    pairs_at_or_above: int
    distribution: dict


def threshold_for_fpr(scores: Sequence[float], *, pairs: int, target_fpr: float, fallback: float) -> Calibration:
    """The lowest threshold at which at most ``target_fpr`` of ``pairs`` unrelated pairs score at or above it.

    ``scores`` are the scores of the pairs a detector returned (the rest scored lower). With fewer pairs than
    1 / ``target_fpr`` no false positive at all is allowed, so the threshold lies just above the highest unrelated
    score. When even all returned scores fit in the allowance, the pairs say nothing about where the threshold
    should be, except that the lowest possible one would do: ``fallback`` (the engine's default) stays.
    """
    if pairs < 1:
        raise ValueError("calibration needs at least one unrelated pair")
    if not 0 < target_fpr < 1:
        raise ValueError("target_fpr must lie between 0 and 1")
    ranked = sorted((float(s) for s in scores), reverse=True)
    allowed = math.floor(target_fpr * pairs)
    if allowed < len(ranked):
        # Just above the first score that would be one false positive too many.
        threshold = math.nextafter(ranked[allowed], math.inf)
    else:
        threshold = fallback
    above = sum(1 for score in ranked if score >= threshold)
    return Calibration(
        threshold=threshold,
        target_fpr=target_fpr,
        measured_fpr=above / pairs,
        pairs=pairs,
        pairs_at_or_above=above,
        distribution=score_distribution(ranked, pairs=pairs),
    )


def score_distribution(scores: Sequence[float], *, pairs: int, bins: int = 20) -> dict:
    """A summary of unrelated-pair scores fit to store and show: a histogram of the returned scores, quantiles,
    the highest ten, and how many pairs were never candidates (scored below every bin)."""
    ranked = sorted((float(s) for s in scores), reverse=True)
    summary: dict = {"pairs": pairs, "returned": len(ranked), "not_returned": pairs - len(ranked), "top": ranked[:10]}
    if not ranked:
        summary.update(histogram=[], quantiles={})
        return summary
    low, high = ranked[-1], ranked[0]
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for score in ranked:
        counts[min(bins - 1, int((score - low) / width))] += 1
    summary["histogram"] = [
        {"from": low + i * width, "to": low + (i + 1) * width, "count": count} for i, count in enumerate(counts)
    ]
    ascending = ranked[::-1]
    summary["quantiles"] = {
        name: ascending[min(len(ascending) - 1, int(q * len(ascending)))]
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
    }
    return summary
