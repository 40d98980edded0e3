"""Symbolic similarity: find a reference work's melody inside a cue's MIDI, whatever its key, tempo or instrument.

The pipeline has three stages.

1. Melody lines. Every non-drum part gives one line: its top voice, taken by the "skyline" rule (at each onset keep
   the highest note; A. L. Uitdenbogerd and J. Zobel, "Manipulation of music for melody matching", ACM Multimedia
   1998). A melody moved to another instrument or octave is therefore still a line of its own.
2. Candidates. Each line is written as notes (pitch interval, quantised inter-onset ratio): intervals do not change
   under transposition and ratios of successive inter-onset intervals do not change under a change of tempo
   (the transposition- and time-scale-invariant representation discussed in K. Lemström, "String Matching
   Techniques for Music Retrieval", PhD thesis, University of Helsinki, 2000). Overlapping
   5-note n-grams of that form, and 6-note n-grams of intervals alone (for re-rhythmed or ornamented copies), are
   looked up in an inverted index over the reference corpus. Each shared n-gram adds its inverse document frequency
   (K. Sparck Jones, "A statistical interpretation of term specificity and its application in retrieval", Journal
   of Documentation 28, 1972), so scales, arpeggios and cadences that every piece has add almost nothing.
3. Evidence. On the best candidates, the shared n-grams vote for a line pair and a transposition; a local
   alignment (T. F. Smith and M. S. Waterman, "Identification of common molecular subsequences", Journal of
   Molecular Biology 147, 1981) of the two lines' pitches, shifted by that transposition, gives the matched notes.
   A substituted note costs one mismatch and an added or dropped note one gap, so a few changed or ornamented
   notes, or a quote inside a longer cue, still align.

The score of a match is its alignment score in *weighted notes*: an aligned note whose pitch and rhythm agree earns
its information weight, half that if only the pitch agrees, and every mismatch or gap costs one. A note's weight is
the mean, over the n-grams that contain it, of 1 for an n-gram that at most RARE_SHARE of the references share,
0 for one that COMMON_SHARE or more share, log-linear in between (shares taken of at least 500 works). So a copied
8-bar tune scores some 20-40, the same 8 bars of a scale nearly 0. The score is comparable across queries of one
index; thresholds are calibrated per index (see benchmarks/similarity.py), since what counts as common depends on
the corpus.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import math
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pretty_midi

from library.fingerprints import FingerprintError

# From benchmarks/similarity.py on 1,000 music21 works (index of 1,000 references, 1e6 negative pairs per half): the
# smallest score with a false-positive rate <= 1e-3 per pair on the calibration half came out at 5.9-7.2 between
# runs with different near-duplicate filtering; this is rounded up above both, and every transformed query in the
# benchmark scored above it. A threshold calibrated on the actual catalog replaces it as soon as one exists.
DEFAULT_THRESHOLD = 8.0

# A copy may be played slower or faster, and in augmentation or diminution, but a passage matched at more than this
# ratio of tempos either way is a coincidence of even rhythms, not a copy.
MAX_TEMPO_RATIO = 4.0
# A line needs a few n-grams of its own to be findable; shorter parts (a single chord, a fanfare hit) are skipped.
MIN_LINE_NOTES = 8
# Onsets closer than this are one chord for the skyline: performed MIDI spreads a chord over a few milliseconds.
CHORD_TOLERANCE_SECONDS = 0.03
# Rhythm-aware n-grams span 5 notes; interval-only ones 6, since without rhythm each note says less.
RHYTHM_NGRAM = 5
INTERVAL_NGRAM = 6
# Intervals beyond two octaves are folded into this range; the 6-bit field holds -31..31.
MAX_INTERVAL = 24
# Inter-onset ratios are quantised to half-octaves of log2(ratio), -4..4, i.e. ratios 1/4..4.
RATIO_STEPS = 4
# An n-gram found in at most RARE_SHARE of the references counts fully, one in COMMON_SHARE or more not at all.
RARE_SHARE = 0.002
COMMON_SHARE = 0.05
# Posting lists longer than this share of the corpus (and than MIN_POSTINGS_CAP) are skipped at query time: such
# n-grams would cost most of the lookup and, by their IDF, add next to nothing.
MAX_POSTINGS_SHARE = 0.02
MIN_POSTINGS_CAP = 256
# Alignment is run on this many candidates beyond the requested limit; each costs about a millisecond.
EXTRA_CANDIDATES = 4
# The aligned region around the seeds: this many notes of context on each side, and at most this many notes.
ALIGN_MARGIN = 16
# Seeds whose diagonals lie within this many notes of each other are one copied passage.
DIAGONAL_BAND = 24
# Bounds the cost of one alignment (rows x columns) on hostile or very long lines.
ALIGN_MAX_NOTES = 600
# Substitution scores (times the note's information weight when positive): a re-rhythmed note still counts, half;
# a wrong note and an added or dropped note cost as much as a full match earns, so chance alignments stay short.
MATCH_RHYTHM = 1.0
MATCH_PITCH_ONLY = 0.5
MISMATCH = -1.0
GAP = -1.0

_FINGERPRINT_MAGIC = b"CLSYMFP1"
_INDEX_FORMAT = "cueledger-symbolic-index/1"
_RHYTHM_KIND = np.uint64(1) << np.uint64(40)


@dataclass(frozen=True)
class Span:
    """A stretch of a score, in seconds and in 1-based bars (fractional: 3.5 is the middle of bar 3)."""

    start_seconds: float
    end_seconds: float
    start_bar: float
    end_bar: float


@dataclass(frozen=True)
class SymbolicMatch:
    """The evidence that a cue contains a reference's melody.

    ``transposition`` is the interval in semitones from the reference to the cue, folded into -5..+6, and
    ``octave_shift`` the whole octaves on top of it. ``tempo_ratio`` is the duration of the matched span in the
    reference divided by the duration in the cue: above 1 the cue plays the passage faster.
    """

    reference_id: int
    score: float
    candidate_score: float
    matched_notes: int
    cue_span: Span
    reference_span: Span
    transposition: int
    octave_shift: int
    tempo_ratio: float
    cue_share: float
    reference_share: float
    cue_notes: tuple[tuple[float, float, int], ...]
    reference_notes: tuple[tuple[float, float, int], ...]

    def as_dict(self) -> dict[str, Any]:
        """The match as plain JSON-safe types."""
        return {
            "reference_id": self.reference_id,
            "score": self.score,
            "candidate_score": self.candidate_score,
            "matched_notes": self.matched_notes,
            "cue_span": _span_dict(self.cue_span),
            "reference_span": _span_dict(self.reference_span),
            "transposition": self.transposition,
            "octave_shift": self.octave_shift,
            "tempo_ratio": self.tempo_ratio,
            "cue_share": self.cue_share,
            "reference_share": self.reference_share,
            "cue_notes": [list(note) for note in self.cue_notes],
            "reference_notes": [list(note) for note in self.reference_notes],
        }


def _span_dict(span: Span) -> dict[str, float]:
    return {
        "start_seconds": span.start_seconds,
        "end_seconds": span.end_seconds,
        "start_bar": span.start_bar,
        "end_bar": span.end_bar,
    }


@dataclass(frozen=True, eq=False)
class Line:
    """One monophonic line: note onsets and durations in seconds, MIDI pitches; sorted by onset."""

    onsets: npt.NDArray[np.float32]
    durations: npt.NDArray[np.float32]
    pitches: npt.NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.pitches.size)


@dataclass(frozen=True, eq=False)
class SymbolicFingerprint:
    """The melody lines of a score, with its downbeats (for bar numbers) and duration. Two fingerprints are equal
    when their encodings are."""

    lines: tuple[Line, ...]
    downbeats: npt.NDArray[np.float32]
    duration_seconds: float
    _digest: list[str] = field(default_factory=list, repr=False, compare=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SymbolicFingerprint) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    @property
    def note_count(self) -> int:
        """Notes over all lines."""
        return sum(len(line) for line in self.lines)

    @property
    def line_count(self) -> int:
        """Number of melody lines."""
        return len(self.lines)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of ``to_bytes()``."""
        if not self._digest:
            self._digest.append(hashlib.sha256(self.to_bytes()).hexdigest())
        return self._digest[0]

    def bar_at(self, seconds: float) -> float:
        """The 1-based, fractional bar number at ``seconds``, from the score's downbeats; beyond the last downbeat
        bars keep the last bar's length."""
        return _bar_at(self.downbeats, seconds)

    def to_bytes(self) -> bytes:
        """A compact, deterministic encoding: a header, then per line its note count and little-endian arrays."""
        out = io.BytesIO()
        out.write(_FINGERPRINT_MAGIC)
        out.write(struct.pack("<dII", float(self.duration_seconds), len(self.lines), int(self.downbeats.size)))
        out.write(self.downbeats.astype("<f4").tobytes())
        for line in self.lines:
            out.write(struct.pack("<I", len(line)))
            out.write(line.onsets.astype("<f4").tobytes())
            out.write(line.durations.astype("<f4").tobytes())
            out.write(line.pitches.astype(np.uint8).tobytes())
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> SymbolicFingerprint:
        """Decode ``to_bytes()`` output; anything else raises FingerprintError("fingerprint_corrupt")."""
        try:
            return _fingerprint_decode(data)
        except FingerprintError:
            raise
        except (struct.error, ValueError, TypeError) as exc:
            raise FingerprintError(
                "fingerprint_corrupt", f"The symbolic fingerprint cannot be decoded: {exc}."
            ) from None


def _fingerprint_decode(data: bytes) -> SymbolicFingerprint:
    view = memoryview(bytes(data))
    if bytes(view[:8]) != _FINGERPRINT_MAGIC:
        raise FingerprintError("fingerprint_corrupt", "Not a symbolic fingerprint: the header is missing.")
    duration, line_count, downbeat_count = struct.unpack_from("<dII", view, 8)
    at = 8 + 16
    downbeats = _take(view, at, downbeat_count, "<f4")
    at += 4 * downbeat_count
    lines = []
    for _ in range(line_count):
        (count,) = struct.unpack_from("<I", view, at)
        at += 4
        onsets = _take(view, at, count, "<f4")
        durations = _take(view, at + 4 * count, count, "<f4")
        pitches = _take(view, at + 8 * count, count, "u1")
        at += 9 * count
        lines.append(_line_checked(onsets, durations, pitches))
    if at != len(view):
        raise FingerprintError("fingerprint_corrupt", "The symbolic fingerprint has trailing or missing bytes.")
    if not lines or not math.isfinite(duration) or duration < 0 or not np.all(np.isfinite(downbeats)):
        raise FingerprintError("fingerprint_corrupt", "The symbolic fingerprint's header is inconsistent.")
    return SymbolicFingerprint(lines=tuple(lines), downbeats=downbeats.astype(np.float32), duration_seconds=duration)


def _take(view: memoryview, at: int, count: int, dtype: str) -> npt.NDArray[Any]:
    size = np.dtype(dtype).itemsize * count
    if at + size > len(view):
        raise FingerprintError("fingerprint_corrupt", "The symbolic fingerprint is truncated.")
    return np.frombuffer(view[at : at + size], dtype=dtype).copy()


def _line_checked(onsets: npt.NDArray[Any], durations: npt.NDArray[Any], pitches: npt.NDArray[Any]) -> Line:
    if (
        pitches.size < MIN_LINE_NOTES
        or not np.all(np.isfinite(onsets))
        or not np.all(np.isfinite(durations))
        or np.any(np.diff(onsets) <= 0)
        or np.any(pitches > 127)
    ):
        raise FingerprintError("fingerprint_corrupt", "A melody line of the symbolic fingerprint is invalid.")
    return Line(onsets.astype(np.float32), durations.astype(np.float32), pitches.astype(np.uint8))


def symbolic_fingerprint(score: pretty_midi.PrettyMIDI) -> SymbolicFingerprint:
    """The melody lines of ``score``: per non-drum part its top voice, doubled parts kept once.

    Raises FingerprintError("no_melodic_content") when no non-drum part has MIN_LINE_NOTES distinct onsets, e.g.
    a drums-only cue or one made of a few held chords.
    """
    if not isinstance(score, pretty_midi.PrettyMIDI):
        raise FingerprintError("score_invalid", "A symbolic fingerprint needs a parsed MIDI score (PrettyMIDI).")
    lines: list[Line] = []
    seen: set[bytes] = set()
    for instrument in score.instruments:
        if instrument.is_drum or len(instrument.notes) < MIN_LINE_NOTES:
            continue
        line = _skyline(instrument.notes)
        if line is None:
            continue
        # Doublings (violins and flute in unison or octaves) are one line: the same onsets and intervals.
        identity = line.onsets.round(3).tobytes() + np.diff(line.pitches.astype(np.int16)).tobytes()
        if identity in seen:
            continue
        seen.add(identity)
        lines.append(line)
    if not lines:
        raise FingerprintError(
            "no_melodic_content",
            f"The score has no melodic line: no non-drum part with at least {MIN_LINE_NOTES} successive notes.",
        )
    try:
        downbeats = np.asarray(score.get_downbeats(), dtype=np.float32)
    except Exception:  # noqa: BLE001 - a broken meter only costs bar numbers, which then count from 0 s in 4/4
        downbeats = np.zeros(0, dtype=np.float32)
    duration = float(max(score.get_end_time(), max(float(line.onsets[-1] + line.durations[-1]) for line in lines)))
    return SymbolicFingerprint(lines=tuple(lines), downbeats=downbeats, duration_seconds=duration)


def _skyline(notes: list[pretty_midi.Note]) -> Line | None:
    """The highest note at each onset (onsets within CHORD_TOLERANCE_SECONDS are one chord), leaving out notes
    that start under a higher note still sounding."""
    starts = np.array([note.start for note in notes], dtype=np.float64)
    ends = np.array([note.end for note in notes], dtype=np.float64)
    pitches = np.array([note.pitch for note in notes], dtype=np.int64)
    valid = np.isfinite(starts) & np.isfinite(ends) & (pitches >= 0) & (pitches <= 127)
    starts, ends, pitches = starts[valid], ends[valid], pitches[valid]
    if starts.size < MIN_LINE_NOTES:
        return None
    order = np.lexsort((-pitches, starts))
    starts, ends, pitches = starts[order], ends[order], pitches[order]
    # A new chord starts where the gap to the previous onset exceeds the tolerance; its first note is the highest.
    new_chord = np.concatenate(([True], np.diff(starts) > CHORD_TOLERANCE_SECONDS))
    chord_id = np.cumsum(new_chord) - 1
    first = np.flatnonzero(new_chord)
    top_pitch = np.full(first.size, -1, dtype=np.int64)
    np.maximum.at(top_pitch, chord_id, pitches)
    if first.size < MIN_LINE_NOTES:
        return None
    # A note that starts under a higher note still held (an inner voice moving under a long melody note) is not
    # part of the top line; a short overlap is only legato and does not count.
    kept: list[int] = []
    top_ends = ends[first]
    onsets_all = starts[first]
    for k in range(first.size):
        if kept:
            last = kept[-1]
            held = top_ends[last] - onsets_all[k]
            if top_pitch[last] > top_pitch[k] and held > max(0.06, 0.5 * (onsets_all[k] - onsets_all[last])):
                continue
        kept.append(k)
    if len(kept) < MIN_LINE_NOTES:
        return None
    chosen = np.array(kept)
    onsets = onsets_all[chosen]
    durations = np.maximum(top_ends[chosen] - onsets, 0.0)
    return Line(onsets.astype(np.float32), durations.astype(np.float32), top_pitch[chosen].astype(np.uint8))


# --- n-grams ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grams:
    """The n-grams of a set of lines, computed on their notes laid end to end (one pass for all lines).

    ``keys[k]`` starts at note ``positions[k]`` of line ``lines[k]`` whose pitch is ``pitches[k]``; ``sizes[k]`` is
    its length in notes. ``ratios`` holds, per note of the concatenation, the quantised inter-onset ratio arriving
    at it, and ``starts`` each line's first note in the concatenation.
    """

    keys: npt.NDArray[np.uint64]
    lines: npt.NDArray[np.int64]
    positions: npt.NDArray[np.int64]
    pitches: npt.NDArray[np.int64]
    sizes: npt.NDArray[np.int64]
    ratios: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]


def _grams(pitches_in: npt.NDArray[Any], onsets_in: npt.NDArray[Any], starts: npt.NDArray[np.int64]) -> _Grams:
    """Rhythm-aware and interval-only n-gram keys of the lines whose notes are ``pitches_in``/``onsets_in``, line
    ``n`` covering ``starts[n]:starts[n + 1]``.

    A note is written as the interval from the previous note, folded into +-MAX_INTERVAL, and the ratio of its
    inter-onset interval to the previous one, quantised to half-octaves of log2 and clipped to +-RATIO_STEPS. A key
    packs its intervals (6 bits each) and, for the rhythm-aware kind, the ratios inside the n-gram (4 bits each)
    exactly; bit 40 tells the kinds apart, so two different n-grams never share a key.
    """
    pitches = pitches_in.astype(np.int64)
    onsets = onsets_in.astype(np.float64)
    notes = pitches.size
    line_of = np.repeat(np.arange(starts.size - 1, dtype=np.int64), np.diff(starts))
    position_of = np.arange(notes, dtype=np.int64) - starts[line_of] if notes else np.zeros(0, dtype=np.int64)
    intervals = np.diff(pitches)
    # Folding by octaves keeps a leap's direction and pitch class; such leaps are rare enough to stay distinctive.
    big = np.abs(intervals) > MAX_INTERVAL
    intervals[big] = np.sign(intervals[big]) * (MAX_INTERVAL - 12 + np.abs(intervals[big]) % 12)
    ioi = np.maximum(np.diff(onsets), 1e-3)
    steps = np.zeros(intervals.size, dtype=np.int64)
    if ioi.size > 1:
        steps[1:] = np.clip(np.rint(2.0 * np.log2(ioi[1:] / ioi[:-1])), -RATIO_STEPS, RATIO_STEPS)
    ratios = np.concatenate(([0], steps)) if notes else np.zeros(0, dtype=np.int64)
    # Each line's first two notes have no ratio of their own: the interval before them lies in another line.
    ratios[starts[:-1]] = 0
    ratios[np.minimum(starts[:-1] + 1, max(notes - 1, 0))[np.diff(starts) > 1]] = 0
    codes = (intervals + 32).astype(np.uint64)
    codes_ratio = (ratios[1:] + RATIO_STEPS).astype(np.uint64)
    parts = []
    for size, rhythmic in ((RHYTHM_NGRAM, True), (INTERVAL_NGRAM, False)):
        windows = notes - size + 1
        if windows <= 0:
            continue
        keys = np.zeros(windows, dtype=np.uint64)
        for k in range(size - 1):
            keys = (keys << np.uint64(6)) | codes[k : k + windows]
        if rhythmic:
            # The ratio of the n-gram's first interval refers to a note outside it, so only the later ones count.
            for k in range(1, size - 1):
                keys = (keys << np.uint64(4)) | codes_ratio[k : k + windows]
            keys |= _RHYTHM_KIND
        first = np.arange(windows)
        inside = line_of[first] == line_of[first + size - 1]
        parts.append((keys[inside], first[inside], size))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return _Grams(np.zeros(0, dtype=np.uint64), empty, empty, empty, empty, ratios, starts)
    first = np.concatenate([f for _, f, _ in parts])
    return _Grams(
        keys=np.concatenate([k for k, _, _ in parts]),
        lines=line_of[first],
        positions=position_of[first],
        pitches=pitches[first],
        sizes=np.concatenate([np.full(f.size, size, dtype=np.int64) for _, f, size in parts]),
        ratios=ratios,
        starts=starts,
    )


def _fingerprint_grams(fp: SymbolicFingerprint) -> _Grams:
    starts = np.concatenate(([0], np.cumsum([len(line) for line in fp.lines]))).astype(np.int64)
    pitches = np.concatenate([line.pitches for line in fp.lines])
    onsets = np.concatenate([line.onsets for line in fp.lines])
    return _grams(pitches, onsets, starts)


# --- the index -------------------------------------------------------------------------------------------------


class SymbolicIndex:
    """An inverted index from n-gram keys to reference works, with the references' fingerprints for alignment.

    Add references, ``freeze()``, then ``query()``. Frozen state is a handful of numpy arrays: the sorted distinct
    keys with their posting-list offsets, the postings (reference positions), and every reference's notes in one
    flat array, so that memory stays near 10 bytes per note and save/load is a copy.
    """

    def __init__(self) -> None:
        self._pending: dict[int, SymbolicFingerprint] = {}
        self._frozen = False
        self._cache: dict[int, SymbolicFingerprint] = {}

    # Building ------------------------------------------------------------------------------------------------

    def add(self, reference_id: int, fp: SymbolicFingerprint) -> None:
        """Add a reference before ``freeze()``. A duplicate id raises ValueError."""
        if self._frozen:
            raise FingerprintError("index_frozen", "The index is frozen; build a new index to add references.")
        if not isinstance(fp, SymbolicFingerprint):
            raise FingerprintError("fingerprint_invalid", "Only a SymbolicFingerprint can be added to the index.")
        reference_id = int(reference_id)
        if reference_id in self._pending:
            raise ValueError(f"Reference {reference_id} is already in the index.")
        self._pending[reference_id] = fp

    def freeze(self) -> None:
        """Build the arrays and document frequencies; after this the index answers queries and takes no adds."""
        if self._frozen:
            return
        ids = sorted(self._pending)
        fps = [self._pending[reference_id] for reference_id in ids]
        self._ids = np.array(ids, dtype=np.int64)
        lines = [line for fp in fps for line in fp.lines]
        self._ref_lines = np.concatenate(([0], np.cumsum([fp.line_count for fp in fps], dtype=np.int64)))
        self._line_notes = np.concatenate(([0], np.cumsum([len(line) for line in lines], dtype=np.int64)))
        self._onsets = _concat([line.onsets for line in lines], np.float32)
        self._durations = _concat([line.durations for line in lines], np.float32)
        self._pitches = _concat([line.pitches for line in lines], np.uint8)
        self._ref_downbeats = np.concatenate(([0], np.cumsum([fp.downbeats.size for fp in fps], dtype=np.int64)))
        self._downbeats = _concat([fp.downbeats for fp in fps], np.float32)
        self._ref_durations = np.array([fp.duration_seconds for fp in fps], dtype=np.float64)
        grams = _grams(self._pitches, self._onsets, self._line_notes)
        ref_of_line = np.repeat(np.arange(len(fps), dtype=np.int32), np.diff(self._ref_lines))
        owners = ref_of_line[grams.lines]
        order = np.lexsort((owners, grams.keys))
        all_keys, owners = grams.keys[order], owners[order]
        # A work is listed once per n-gram, however often it repeats it (document frequency, not term frequency).
        distinct = np.ones(all_keys.size, dtype=bool)
        distinct[1:] = (all_keys[1:] != all_keys[:-1]) | (owners[1:] != owners[:-1])
        all_keys, owners = all_keys[distinct], owners[distinct]
        self._keys, starts = np.unique(all_keys, return_index=True)
        self._key_offsets = np.concatenate((starts, [all_keys.size])).astype(np.int64)
        self._postings = owners
        self._pending = {}
        self._frozen = True
        self._derive()

    def _derive(self) -> None:
        """Quantities computed from the stored arrays (after freeze or load)."""
        count = int(self._ids.size)
        df = np.diff(self._key_offsets).astype(np.float64)
        # Smoothed IDF, log((N + 1) / df): positive even for a corpus of one work.
        self._idf = np.log((count + 1) / np.maximum(df, 1.0)).astype(np.float32)
        self._weight = _information_weight(df, count).astype(np.float32)
        self._postings_cap = max(MIN_POSTINGS_CAP, int(MAX_POSTINGS_SHARE * count))
        self._position = {int(reference_id): n for n, reference_id in enumerate(self._ids)}
        self._cache = {}

    # Introspection -------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._ids.size) if self._frozen else len(self._pending)

    def reference_ids(self) -> list[int]:
        """The references' ids, ascending."""
        return [int(x) for x in self._ids] if self._frozen else sorted(self._pending)

    def fingerprint(self, reference_id: int) -> SymbolicFingerprint:
        """The fingerprint stored for ``reference_id``; KeyError if there is none."""
        if not self._frozen:
            return self._pending[int(reference_id)]
        return self._reference(self._position[int(reference_id)])

    def memory_bytes(self) -> int:
        """Bytes held by the frozen index's arrays."""
        self._require_frozen()
        return sum(array.nbytes for array in self._arrays().values()) + self._idf.nbytes + self._weight.nbytes

    def _reference(self, position: int) -> SymbolicFingerprint:
        cached = self._cache.get(position)
        if cached is not None:
            return cached
        lines = []
        for line in range(int(self._ref_lines[position]), int(self._ref_lines[position + 1])):
            a, b = int(self._line_notes[line]), int(self._line_notes[line + 1])
            lines.append(Line(self._onsets[a:b], self._durations[a:b], self._pitches[a:b]))
        a, b = int(self._ref_downbeats[position]), int(self._ref_downbeats[position + 1])
        fp = SymbolicFingerprint(tuple(lines), self._downbeats[a:b], float(self._ref_durations[position]))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[position] = fp
        return fp

    # Persistence ---------------------------------------------------------------------------------------------

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "ids": self._ids,
            "ref_lines": self._ref_lines,
            "line_notes": self._line_notes,
            "onsets": self._onsets,
            "durations": self._durations,
            "pitches": self._pitches,
            "ref_downbeats": self._ref_downbeats,
            "downbeats": self._downbeats,
            "ref_durations": self._ref_durations,
            "keys": self._keys,
            "key_offsets": self._key_offsets,
            "postings": self._postings,
        }

    def save(self, path: str | Path) -> None:
        """Write the frozen index to one file (an uncompressed .npz with a format tag; each member has a CRC).
        The caller makes the write atomic (temporary file, then rename)."""
        self._require_frozen()
        arrays = dict(self._arrays())
        arrays["format"] = np.frombuffer(_INDEX_FORMAT.encode(), dtype=np.uint8)
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> SymbolicIndex:
        """Read a file written by ``save()``. A truncated, corrupt or foreign file raises
        FingerprintError("index_corrupt"); a missing one FileNotFoundError."""
        index = cls()
        try:
            with np.load(path, allow_pickle=False) as archive:
                if bytes(archive["format"].tobytes()) != _INDEX_FORMAT.encode():
                    raise FingerprintError("index_corrupt", "The file is not a Cueledger symbolic index.")
                arrays = {name: archive[name] for name in index._array_names()}
        except FingerprintError:
            raise
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise FingerprintError("index_corrupt", f"The symbolic index file cannot be read: {exc}.") from None
        _validate_index(arrays)
        for name, array in arrays.items():
            setattr(index, f"_{name}", array)
        index._pending = {}
        index._frozen = True
        index._derive()
        return index

    @staticmethod
    def _array_names() -> tuple[str, ...]:
        return (
            "ids",
            "ref_lines",
            "line_notes",
            "onsets",
            "durations",
            "pitches",
            "ref_downbeats",
            "downbeats",
            "ref_durations",
            "keys",
            "key_offsets",
            "postings",
        )

    # Querying ------------------------------------------------------------------------------------------------

    def _require_frozen(self) -> None:
        if not self._frozen:
            raise FingerprintError("index_not_frozen", "Call freeze() on the symbolic index before using it.")

    def candidates(self, fp: SymbolicFingerprint, *, count: int, exclude: int | None = None) -> list[tuple[int, float]]:
        """The ``count`` references with the highest sum of IDF over n-grams shared with ``fp``, as
        (position, score) pairs, best first; references sharing nothing are left out."""
        self._require_frozen()
        references = int(self._ids.size)
        keys = np.unique(_fingerprint_grams(fp).keys)
        if references == 0 or keys.size == 0 or self._keys.size == 0:
            return []
        slots = np.searchsorted(self._keys, keys)
        inside = slots < self._keys.size
        slots = slots[inside]
        slots = slots[self._keys[slots] == keys[inside]]
        starts, ends = self._key_offsets[slots], self._key_offsets[slots + 1]
        keep = (ends - starts) <= self._postings_cap
        starts, ends, slots = starts[keep], ends[keep], slots[keep]
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return []
        # All posting ranges in one gather: position k of the result is starts[r] + (k - first position of r).
        run_starts = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        positions = self._postings[run_starts + np.arange(total)]
        weights = np.repeat(self._idf[slots], lengths)
        scores = np.bincount(positions, weights=weights, minlength=references)
        if exclude is not None and int(exclude) in self._position:
            scores[self._position[int(exclude)]] = 0.0
        count = min(count, references)
        top = np.argpartition(-scores, count - 1)[:count] if count < references else np.arange(references)
        top = top[scores[top] > 0]
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(position), float(scores[position])) for position in top]

    def query(self, fp: SymbolicFingerprint, *, limit: int = 10, exclude: int | None = None) -> list[SymbolicMatch]:
        """The references whose melodies ``fp`` shares, best first: every aligned candidate with its score (no
        threshold applied). ``exclude`` leaves one reference out (calibration queries a reference against the
        rest)."""
        self._require_frozen()
        if not isinstance(fp, SymbolicFingerprint):
            raise FingerprintError("fingerprint_invalid", "A query needs a SymbolicFingerprint.")
        if limit <= 0:
            return []
        found = self.candidates(fp, count=limit + EXTRA_CANDIDATES, exclude=exclude)
        if not found:
            return []
        cue = _Prepared(fp, self)
        regions = [
            region
            for number, (position, _) in enumerate(found)
            for region in _regions(cue, self._reference(position), number)
        ]
        best: dict[int, tuple[float, _Region, list[tuple[int, int]]]] = {}
        for region, (score, pairs) in _align_all(regions):
            if not pairs or not _plausible_tempo(cue.fp, self._reference(found[region.candidate][0]), region, pairs):
                continue
            if region.candidate not in best or score > best[region.candidate][0]:
                best[region.candidate] = (score, region, pairs)
        matches = []
        for number, (score, region, pairs) in best.items():
            position, candidate_score = found[number]
            reference = self._reference(position)
            matches.append(_match(cue, reference, int(self._ids[position]), candidate_score, region, score, pairs))
        matches.sort(key=lambda m: (-m.score, -m.candidate_score, m.reference_id))
        return matches[:limit]

    def _key_weights(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
        """Information weight per key; keys the corpus never saw count fully."""
        if self._keys.size == 0 or keys.size == 0:
            return np.ones(keys.size)
        slots = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        found = self._keys[slots] == keys
        return np.where(found, self._weight[slots], 1.0).astype(np.float64)


def _information_weight(df: npt.NDArray[np.float64], count: int) -> npt.NDArray[np.float64]:
    """1 for an n-gram that at most RARE_SHARE of the corpus shares, 0 for one that COMMON_SHARE or more shares,
    log-linear in between. Shares are taken of at least 1/RARE_SHARE works: a small corpus says little about what
    is common, so there an n-gram must recur in several works before it loses weight."""
    share = np.maximum(df, 1.0) / max(count, 1.0 / RARE_SHARE)
    scale = math.log(COMMON_SHARE / RARE_SHARE)
    return np.clip(np.log(COMMON_SHARE / share) / scale, 0.0, 1.0)


def _validate_index(arrays: dict[str, npt.NDArray[Any]]) -> None:
    """Check the arrays' shapes and offsets agree, so that a damaged file fails here and not inside a query."""

    def fail(why: str) -> None:
        raise FingerprintError("index_corrupt", f"The symbolic index file is inconsistent: {why}.")

    def offsets_ok(name: str, length: int, total: int) -> None:
        array = arrays[name]
        if array.ndim != 1 or array.size != length + 1 or array[0] != 0 or array[-1] != total:
            fail(f"{name} does not cover its data")
        if np.any(np.diff(array) < 0):
            fail(f"{name} is not ascending")

    try:
        refs, notes = arrays["ids"].size, arrays["pitches"].size
        lines = arrays["line_notes"].size - 1
        if arrays["onsets"].size != notes or arrays["durations"].size != notes:
            fail("note arrays differ in length")
        offsets_ok("ref_lines", refs, lines)
        offsets_ok("line_notes", lines, notes)
        offsets_ok("ref_downbeats", refs, arrays["downbeats"].size)
        offsets_ok("key_offsets", arrays["keys"].size, arrays["postings"].size)
        if arrays["ref_durations"].size != refs or np.unique(arrays["ids"]).size != refs:
            fail("reference ids or durations do not match")
        keys = arrays["keys"]
        if keys.size and not np.all(keys[1:] > keys[:-1]):
            fail("keys are not strictly ascending")
        if arrays["postings"].size and (arrays["postings"].min() < 0 or arrays["postings"].max() >= refs):
            fail("a posting names no reference")
        expected = {"ids": "i8", "keys": "u8", "postings": "i4", "pitches": "u1", "onsets": "f4"}
        for name, code in expected.items():
            if arrays[name].dtype != np.dtype(code):
                fail(f"{name} has type {arrays[name].dtype}")
    except (IndexError, TypeError, ValueError) as exc:
        fail(str(exc))


def _concat(parts: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def _bar_at(downbeats: npt.NDArray[np.float32], seconds: float) -> float:
    beats = downbeats.tolist()
    if len(beats) < 2:
        # Without a meter to go by: 4/4 at 120 bpm, the Standard MIDI File default, from the first downbeat.
        return round(1.0 + (seconds - (beats[0] if beats else 0.0)) / 2.0, 3)
    k = bisect.bisect_right(beats, seconds) - 1
    k = min(max(k, 0), len(beats) - 2) if seconds < beats[-1] else len(beats) - 1
    length = beats[k + 1] - beats[k] if k + 1 < len(beats) else beats[-1] - beats[-2]
    return round(1.0 + k + (seconds - beats[k]) / max(length, 1e-6), 3)


# --- alignment -------------------------------------------------------------------------------------------------


class _Prepared:
    """A query's n-grams with their information weights, and per note the weight of its phrase."""

    def __init__(self, fp: SymbolicFingerprint, index: SymbolicIndex) -> None:
        self.fp = fp
        self.grams = _fingerprint_grams(fp)
        self.key_weights = index._key_weights(self.grams.keys)
        self.note_weights = _note_weights(self.grams, self.key_weights)


def _note_weights(grams: _Grams, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Per note, the mean information weight of the n-grams that contain it (1 where none does)."""
    notes = int(grams.ratios.size)
    first = grams.starts[grams.lines] + grams.positions
    # A difference array: each n-gram adds its weight from its first note up to its last.
    total = np.cumsum(
        np.bincount(first, weights=weights, minlength=notes + 1)
        - np.bincount(first + grams.sizes, weights=weights, minlength=notes + 1)
    )[:notes]
    seen = np.cumsum(np.bincount(first, minlength=notes + 1) - np.bincount(first + grams.sizes, minlength=notes + 1))
    seen = seen[:notes]
    return np.where(seen > 0, total / np.maximum(seen, 1), 1.0)


@dataclass(frozen=True)
class _Region:
    """A rectangle of (cue line, reference line) notes to align under one transposition."""

    candidate: int
    cue_line: int
    ref_line: int
    shift: int
    cue_start: int
    ref_start: int
    substitution: npt.NDArray[np.float64]


def _regions(cue: _Prepared, reference: SymbolicFingerprint, candidate: int) -> list[_Region]:
    """Shared n-grams, grouped by (cue line, reference line, transposition); the one or two largest groups give the
    regions to align: the notes the group's seeds span, plus ALIGN_MARGIN notes around them."""
    ref = _fingerprint_grams(reference)
    cue_grams = cue.grams
    if ref.keys.size == 0 or cue_grams.keys.size == 0:
        return []
    order = np.argsort(ref.keys, kind="stable")
    keys = ref.keys[order]
    left = np.searchsorted(keys, cue_grams.keys, side="left")
    # A key repeated in the reference (a refrain) seeds each of its first few occurrences.
    right = np.minimum(np.searchsorted(keys, cue_grams.keys, side="right"), left + 4)
    lengths = right - left
    total = int(lengths.sum())
    if total == 0:
        return []
    cue_rows = np.repeat(np.arange(cue_grams.keys.size), lengths)
    ref_rows = order[np.repeat(left - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(total)]
    c_line, c_pos = cue_grams.lines[cue_rows], cue_grams.positions[cue_rows]
    r_line, r_pos = ref.lines[ref_rows], ref.positions[ref_rows]
    shift = cue_grams.pitches[cue_rows] - ref.pitches[ref_rows]
    # One integer per group: shifts lie within +-127, line numbers below 2**16.
    group = (c_line << 32) | (r_line << 16) | (shift + 128)
    labels, inverse = np.unique(group, return_inverse=True)
    # A group's vote is the information weight of the distinct n-grams it shares, each counted once however often
    # it repeats (a pedal note repeats one n-gram a hundred times); a small constant keeps a vote for groups of
    # common n-grams only.
    seed_keys = cue_grams.keys[cue_rows]
    order_pairs = np.lexsort((seed_keys, inverse))
    first_of_pair = np.ones(order_pairs.size, dtype=bool)
    first_of_pair[1:] = (inverse[order_pairs][1:] != inverse[order_pairs][:-1]) | (
        seed_keys[order_pairs][1:] != seed_keys[order_pairs][:-1]
    )
    voters = order_pairs[first_of_pair]
    votes = np.bincount(inverse[voters], weights=cue.key_weights[cue_rows[voters]] + 0.01, minlength=labels.size)
    ranked = np.lexsort((labels, -votes))
    regions: list[_Region] = []
    for rank in ranked[:2]:
        if regions and votes[rank] * 2 < votes[ranked[0]]:
            break
        members = inverse == rank
        cue_line, ref_line, seed_shift = int(c_line[members][0]), int(r_line[members][0]), int(shift[members][0])
        regions.append(
            _region(cue, ref, reference, candidate, (cue_line, ref_line, seed_shift), c_pos[members], r_pos[members])
        )
    return regions


def _region(
    cue: _Prepared,
    ref: _Grams,
    reference: SymbolicFingerprint,
    candidate: int,
    group: tuple[int, int, int],
    cue_seeds: npt.NDArray[np.int64],
    ref_seeds: npt.NDArray[np.int64],
) -> _Region:
    cue_line, ref_line, shift = group
    line, other = cue.fp.lines[cue_line], reference.lines[ref_line]
    reach = max(RHYTHM_NGRAM, INTERVAL_NGRAM)
    # A copied passage keeps its seeds near one diagonal (reference note - cue note), drifting by one per added or
    # dropped note; seeds scattered elsewhere are chance. Keep the densest band of diagonals.
    diagonal = ref_seeds - cue_seeds
    order = np.argsort(diagonal, kind="stable")
    sorted_diagonal = diagonal[order]
    inside = np.searchsorted(sorted_diagonal, sorted_diagonal + DIAGONAL_BAND, side="right") - np.arange(order.size)
    low = sorted_diagonal[int(np.argmax(inside))]
    chosen = (diagonal >= low) & (diagonal <= low + DIAGONAL_BAND)
    cue_seeds, ref_seeds = cue_seeds[chosen], ref_seeds[chosen]
    c0 = max(0, int(cue_seeds.min()) - ALIGN_MARGIN)
    c1 = min(len(line), int(cue_seeds.max()) + reach + ALIGN_MARGIN, c0 + ALIGN_MAX_NOTES)
    r0 = max(0, int(ref_seeds.min()) - ALIGN_MARGIN)
    r1 = min(len(other), int(ref_seeds.max()) + reach + ALIGN_MARGIN, r0 + ALIGN_MAX_NOTES)
    same_pitch = (line.pitches[c0:c1].astype(np.int64)[:, None] - shift) == other.pitches[r0:r1].astype(np.int64)
    c, r = int(cue.grams.starts[cue_line]), int(ref.starts[ref_line])
    same_rhythm = cue.grams.ratios[c + c0 : c + c1, None] == ref.ratios[None, r + r0 : r + r1]
    gain = np.where(same_rhythm, MATCH_RHYTHM, MATCH_PITCH_ONLY) * cue.note_weights[c + c0 : c + c1, None]
    return _Region(candidate, cue_line, ref_line, shift, c0, r0, np.where(same_pitch, gain, MISMATCH))


def _match(
    cue: _Prepared,
    reference: SymbolicFingerprint,
    reference_id: int,
    candidate_score: float,
    region: _Region,
    score: float,
    pairs: list[tuple[int, int]],
) -> SymbolicMatch:
    """The evidence of one aligned region."""
    cue_line, ref_line = cue.fp.lines[region.cue_line], reference.lines[region.ref_line]
    cue_idx = np.array([region.cue_start + i for i, _ in pairs])
    ref_idx = np.array([region.ref_start + j for _, j in pairs])
    shifts = cue_line.pitches[cue_idx].astype(np.int64) - ref_line.pitches[ref_idx].astype(np.int64)
    shift = int(np.median(shifts))
    folded = (shift + 5) % 12 - 5
    cue_span = _span(cue.fp, cue_line, cue_idx)
    ref_span = _span(reference, ref_line, ref_idx)
    cue_length = float(cue_line.onsets[cue_idx[-1]] - cue_line.onsets[cue_idx[0]])
    ref_length = float(ref_line.onsets[ref_idx[-1]] - ref_line.onsets[ref_idx[0]])
    return SymbolicMatch(
        reference_id=reference_id,
        score=round(float(score), 3),
        candidate_score=round(float(candidate_score), 3),
        matched_notes=len(pairs),
        cue_span=cue_span,
        reference_span=ref_span,
        transposition=folded,
        octave_shift=(shift - folded) // 12,
        tempo_ratio=round(ref_length / cue_length, 4) if cue_length > 0 and ref_length > 0 else 1.0,
        cue_share=round(len(pairs) / len(cue_line), 4),
        reference_share=round(len(pairs) / len(ref_line), 4),
        cue_notes=_notes(cue_line, cue_idx),
        reference_notes=_notes(ref_line, ref_idx),
    )


def _plausible_tempo(
    cue: SymbolicFingerprint, reference: SymbolicFingerprint, region: _Region, pairs: list[tuple[int, int]]
) -> bool:
    """Whether the aligned passages could be one tune played at two tempos: their lengths differ by at most
    MAX_TEMPO_RATIO either way. Inter-onset ratios ignore tempo altogether, so without this a run of even notes
    would match any other run of even notes ten times faster or slower."""
    cue_line, ref_line = cue.lines[region.cue_line], reference.lines[region.ref_line]
    first, last = pairs[0], pairs[-1]
    cue_length = float(cue_line.onsets[region.cue_start + last[0]] - cue_line.onsets[region.cue_start + first[0]])
    ref_length = float(ref_line.onsets[region.ref_start + last[1]] - ref_line.onsets[region.ref_start + first[1]])
    if cue_length <= 0 or ref_length <= 0:
        return True
    return 1 / MAX_TEMPO_RATIO <= ref_length / cue_length <= MAX_TEMPO_RATIO


def _span(fp: SymbolicFingerprint, line: Line, idx: npt.NDArray[Any]) -> Span:
    start = float(line.onsets[idx[0]])
    end = float(max(line.onsets[idx] + line.durations[idx]))
    return Span(round(start, 3), round(end, 3), fp.bar_at(start), fp.bar_at(end))


def _notes(line: Line, idx: npt.NDArray[Any]) -> tuple[tuple[float, float, int], ...]:
    onsets = np.round(line.onsets[idx].astype(np.float64), 3).tolist()
    durations = np.round(line.durations[idx].astype(np.float64), 3).tolist()
    return tuple(zip(onsets, durations, line.pitches[idx].tolist(), strict=True))


def _align_all(regions: list[_Region]) -> list[tuple[_Region, tuple[float, list[tuple[int, int]]]]]:
    """Align every region, in batches of similar size so that padding stays small."""
    ordered = sorted(regions, key=lambda region: -region.substitution.shape[0])
    out = []
    while ordered:
        rows = ordered[0].substitution.shape[0]
        size = next((k for k, region in enumerate(ordered) if region.substitution.shape[0] * 2 < rows), len(ordered))
        batch, ordered = ordered[:size], ordered[size:]
        out += list(zip(batch, smith_waterman_batch([r.substitution for r in batch], gap=GAP), strict=True))
    return out


def smith_waterman(substitution: npt.NDArray[np.float64], *, gap: float) -> tuple[float, list[tuple[int, int]]]:
    """Local alignment (Smith and Waterman, 1981) with a linear gap cost, given the substitution score of every
    (row, column) pair; returns the best score and the aligned pairs whose substitution score is positive."""
    ((score, pairs),) = smith_waterman_batch([substitution], gap=gap)
    return score, pairs


def smith_waterman_batch(
    substitutions: list[npt.NDArray[np.float64]], *, gap: float
) -> list[tuple[float, list[tuple[int, int]]]]:
    """Smith-Waterman on several independent problems at once, padded into one (problem, row, column) array so
    that each numpy call does every problem's row.

    Within a row, H[j] = max(E[j], H[j - 1] + gap), with E the diagonal and vertical moves floored at 0; this
    unrolls to a running maximum, max over k <= j of E[k] + gap * (j - k) = maximum.accumulate(E - gap * k) + gap * j,
    so a row is a few whole-array operations and the Python loop runs once per row, not once per cell.
    """
    if not substitutions:
        return []
    rows = max(sub.shape[0] for sub in substitutions)
    cols = max(sub.shape[1] for sub in substitutions)
    batch = len(substitutions)
    # Padding can never be part of an alignment: it costs more than any alignment can gain.
    padded = np.full((batch, rows, cols), -1e6, dtype=np.float64)
    for b, sub in enumerate(substitutions):
        padded[b, : sub.shape[0], : sub.shape[1]] = sub
    h = np.zeros((batch, rows + 1, cols + 1))
    ramp = gap * np.arange(cols + 1, dtype=np.float64)
    e = np.zeros((batch, cols + 1))
    for i in range(1, rows + 1):
        up = h[:, i - 1]
        np.maximum(up[:, :-1] + padded[:, i - 1], up[:, 1:] + gap, out=e[:, 1:])
        np.maximum(e, 0.0, out=e)
        h[:, i] = np.maximum.accumulate(e - ramp, axis=1) + ramp
    return [_traceback(h[b], padded[b], gap) for b in range(batch)]


def _traceback(
    h: npt.NDArray[np.float64], substitution: npt.NDArray[np.float64], gap: float
) -> tuple[float, list[tuple[int, int]]]:
    best = int(np.argmax(h))
    i, j = divmod(best, h.shape[1])
    score = float(h[i, j])
    pairs: list[tuple[int, int]] = []
    while i > 0 and j > 0 and h[i, j] > 0:
        here = h[i, j]
        if math.isclose(here, h[i - 1, j - 1] + substitution[i - 1, j - 1], abs_tol=1e-9):
            if substitution[i - 1, j - 1] > 0:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif math.isclose(here, h[i - 1, j] + gap, abs_tol=1e-9):
            i -= 1
        else:
            j -= 1
    pairs.reverse()
    return score, pairs
