"""Acoustic similarity: find reference recordings that a cue's audio copies, in whole or in part.

A recording becomes a sequence of Chromaprint items (32-bit sub-fingerprints, one per 1365 samples at 11025 Hz, so
8.08 per second). Chromaprint's analysis parameters come from its source, ``src/fingerprinter_configuration.h`` and
``.cpp`` (sample rate 11025 Hz, frame 4096 samples, overlap ``4096 - 4096 / 3``, a 5-tap chroma filter, 16
classifiers up to 16 frames wide) and its default algorithm ``TEST2``. Each item thus summarises some 2.7 s of audio,
and the first item appears only once about 2.7 s of sound have been heard (measured: 226 items for 30.6 s).

Matching follows the approach of Chromaprint's own ``FingerprintMatcher`` (``src/fingerprint_matcher.cpp``) and the
AcoustID index: candidate alignments are found by exact lookups of the items' high bits and voting on the time offset
they imply, then each alignment is verified by the bit error rate (Hamming distance / 32) of the aligned items, which
is about 0.5 for unrelated audio and near 0 for the same recording. Here the high bits are 20 (Chromaprint's
pairwise matcher aligns on 12, and strips AcoustID queries to 28): measured on FluidSynth renders, the top 20 bits of
aligned items still agree for 19% of the items in the worst case of a half-item time shift, while 2^20 keys keep
posting lists short at 100,000 references.

Low-information audio (silence, drones, held chords) yields the same item again and again; such stretches are neither
indexed nor counted as evidence, and keys found in too many places of the index are stop-listed.

Times: item ``k`` is reported at ``k * SECONDS_PER_ITEM``, the start of the audio it summarises. Both sides of an
alignment use the same convention, so offsets are exact to one item, while a segment's edges in the music are only
accurate to about a second (an item still matches when a third of its window is foreign audio).

Score: ``1 - bit error rate`` pooled over the informative items of the best alignment's matching segments, a segment
being at least ``MIN_SEGMENT_SECONDS`` long with a smoothed bit error rate at most ``SEGMENT_MAX_BER``. The score is
thus in (1 - SEGMENT_MAX_BER, 1]; matches are returned only when a segment exists, and thresholds apply to the score.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from library.fingerprints import ENGINE_VERSION, FingerprintError

try:
    import chromaprint
except ImportError as exc:  # pyacoustid raises ImportError when libchromaprint is not installed
    _CHROMAPRINT_ERROR: str | None = str(exc)
else:
    _CHROMAPRINT_ERROR = None

# Chromaprint's fixed analysis parameters (src/fingerprinter_configuration.cpp): 11025 Hz, frame 4096, hop 4096 // 3.
CHROMAPRINT_SAMPLE_RATE = 11_025
CHROMAPRINT_HOP = 4096 - (4096 - 4096 // 3)
SECONDS_PER_ITEM = CHROMAPRINT_HOP / CHROMAPRINT_SAMPLE_RATE
CHROMAPRINT_ALGORITHM = 1  # TEST2, Chromaprint's and AcoustID's default

KEY_BITS = 20
_KEY_SHIFT = 32 - KEY_BITS

# Below -60 dBFS at every sample there is nothing a listener could recognise.
SILENCE_PEAK = 10 ** (-60 / 20)
# A segment shorter than this is too weak as evidence: short stretches of unrelated renders made with the same
# soundfont agree by chance more often than longer ones.
MIN_SEGMENT_SECONDS = 4.0
MIN_SEGMENT_ITEMS = math.ceil(MIN_SEGMENT_SECONDS / SECONDS_PER_ITEM)
# A fingerprint that cannot hold one segment can never match anything.
MIN_FINGERPRINT_ITEMS = MIN_SEGMENT_ITEMS
# Unrelated music sits at 0.40-0.50 (measured), copies and light edits below 0.10; Chromaprint's own matcher uses
# 10 of 32 bits (0.31).
SEGMENT_MAX_BER = 0.30
# About two seconds: long enough to ride over a single damaged item, short enough to find a 4 s segment's edges.
SMOOTHING_ITEMS = 16
# Consecutive items of music differ in about 5 of 32 bits (median, measured); silence and a steady sine differ in 0.
# Averaged over about a second, fewer than this many changing bits mean the audio says nothing new.
MIN_NOVELTY_BITS = 1.0
NOVELTY_ITEMS = 8
# A key repeated more often within one recording is a loop or a held sound; its later occurrences add only noise.
MAX_KEY_REPEATS = 4
# Keys with more postings than this many times the mean are stop-listed (but never below STOP_LIST_FLOOR).
STOP_LIST_FACTOR = 50
STOP_LIST_FLOOR = 256
# Votes an alignment needs before it is verified; random collisions of 20-bit keys rarely give two.
MIN_VOTES = 3
# Alignments verified per query; enough that calibration sees every plausible candidate.
MAX_CANDIDATES = 64
MAX_ALIGNMENTS_PER_REFERENCE = 3

# From the calibration in benchmarks/similarity_acoustic.py (1,000 references, 1.16 million query/reference pairs plus
# 999,000 leave-one-out pairs): a false-positive rate <= 1e-3 per pair is already met at the lowest score a match can
# have (0.70; 4 + 1 false pairs in all, the highest at 0.791), while copies and light edits scored at least 0.922.
# The default sits in that gap, away from both: no false pair of the run reaches it, and tempo-changed re-renders
# (0.80-0.84), which are not copies, stay below it. The catalog's own calibration replaces it.
DEFAULT_THRESHOLD = 0.85

_BLOCK_FRAMES = 65_536
_FINGERPRINT_MAGIC = b"CLAF"
_FINGERPRINT_VERSION = 1
_FINGERPRINT_HEADER = struct.Struct("<4sBBHdI")  # magic, version, algorithm, reserved, duration, item count
_INDEX_MAGIC = b"CUELEDGER-ACOUSTIC-INDEX\n"
_INDEX_VERSION = 1
_INDEX_ARRAYS = ("ref_ids", "ref_starts", "durations", "items", "keys", "key_starts", "postings")


@dataclass(frozen=True, eq=False)
class AcousticFingerprint:
    """Raw Chromaprint items of one recording and its duration in seconds."""

    items: np.ndarray
    duration_seconds: float

    def __post_init__(self) -> None:
        items = np.ascontiguousarray(self.items, dtype=np.uint32)
        if items.ndim != 1:
            raise FingerprintError("fingerprint_corrupt", "A fingerprint is a one-dimensional array of items.")
        if not math.isfinite(self.duration_seconds) or self.duration_seconds < 0:
            raise FingerprintError("fingerprint_corrupt", f"Invalid duration {self.duration_seconds!r}.")
        items = items.copy() if items is self.items else items
        items.setflags(write=False)
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "duration_seconds", float(self.duration_seconds))

    @property
    def seconds_per_item(self) -> float:
        """Time between consecutive items: Chromaprint's hop, 1365 samples at 11025 Hz (0.1238 s)."""
        return SECONDS_PER_ITEM

    def to_bytes(self) -> bytes:
        """A compact, versioned, checksummed encoding: 4 bytes per item plus 24 bytes."""
        header = _FINGERPRINT_HEADER.pack(
            _FINGERPRINT_MAGIC,
            _FINGERPRINT_VERSION,
            CHROMAPRINT_ALGORITHM,
            0,
            self.duration_seconds,
            len(self.items),
        )
        body = header + self.items.astype("<u4").tobytes()
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> AcousticFingerprint:
        """Decode :meth:`to_bytes`; anything else raises ``FingerprintError("fingerprint_corrupt")``."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FingerprintError("fingerprint_corrupt", f"Expected bytes, got {type(data).__name__}.")
        data = bytes(data)
        size = _FINGERPRINT_HEADER.size
        if len(data) < size + 4:
            raise FingerprintError("fingerprint_corrupt", f"Fingerprint of {len(data)} bytes is truncated.")
        magic, version, algorithm, _reserved, duration, count = _FINGERPRINT_HEADER.unpack_from(data)
        if magic != _FINGERPRINT_MAGIC or version != _FINGERPRINT_VERSION or algorithm != CHROMAPRINT_ALGORITHM:
            raise FingerprintError("fingerprint_corrupt", "Not an acoustic fingerprint of this engine version.")
        if len(data) != size + 4 * count + 4:
            raise FingerprintError("fingerprint_corrupt", f"Expected {count} items, found {len(data)} bytes.")
        (checksum,) = struct.unpack_from("<I", data, len(data) - 4)
        if zlib.crc32(data[:-4]) != checksum:
            raise FingerprintError("fingerprint_corrupt", "Fingerprint checksum mismatch.")
        items = np.frombuffer(data, dtype="<u4", count=count, offset=size).astype(np.uint32)
        return cls(items, duration)

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of :meth:`to_bytes`."""
        return hashlib.sha256(self.to_bytes()).hexdigest()


@dataclass(frozen=True)
class Segment:
    """A stretch of the cue that matches a stretch of the reference, in seconds of item time (see module doc)."""

    cue_start: float
    cue_end: float
    reference_start: float
    reference_end: float
    bit_error_rate: float


@dataclass(frozen=True)
class AcousticMatch:
    """One reference that a query matches. ``score`` is 1 - the pooled bit error rate of the informative items of
    all ``segments``; ``ber_curve`` is the raw bit error rate per cue second over the aligned region(s)."""

    reference_id: int
    score: float
    matched_seconds: float
    segments: tuple[Segment, ...]
    ber_curve: tuple[tuple[float, float], ...]
    offset_seconds: float
    votes: int = field(default=0, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe representation (plain floats, lists)."""
        return {
            "reference_id": int(self.reference_id),
            "score": round(float(self.score), 6),
            "matched_seconds": round(float(self.matched_seconds), 3),
            "offset_seconds": round(float(self.offset_seconds), 3),
            "votes": int(self.votes),
            "segments": [
                {
                    "cue_start": round(s.cue_start, 3),
                    "cue_end": round(s.cue_end, 3),
                    "reference_start": round(s.reference_start, 3),
                    "reference_end": round(s.reference_end, 3),
                    "bit_error_rate": round(s.bit_error_rate, 6),
                }
                for s in self.segments
            ],
            "ber_curve": [[round(t, 3), round(b, 6)] for t, b in self.ber_curve],
        }


# --- fingerprinting ------------------------------------------------------------------------------------------------


def acoustic_fingerprint_file(path: str | Path) -> AcousticFingerprint:
    """Fingerprint an audio file (WAV, FLAC, Ogg Vorbis, MP3: whatever libsndfile reads), decoding it in blocks so
    memory stays flat however long the file is."""
    try:
        audio = soundfile.SoundFile(str(path))
    except Exception as exc:  # libsndfile reports unknown formats, missing files and garbage alike
        raise FingerprintError("audio_unreadable", f"Cannot open {Path(path).name} as audio: {exc}") from None
    with audio:
        blocks = audio.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True)
        return acoustic_fingerprint_blocks(
            _guard_decoding(blocks, Path(path).name), sample_rate=audio.samplerate, channels=audio.channels
        )


def _guard_decoding(blocks: Iterator[np.ndarray], name: str) -> Iterator[np.ndarray]:
    # A file can open fine and fail half-way (a truncated FLAC frame, a damaged Ogg page).
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except Exception as exc:
            raise FingerprintError("audio_unreadable", f"Decoding {name} failed: {exc}") from None
        yield block


def acoustic_fingerprint_blocks(
    blocks: Iterable[np.ndarray], *, sample_rate: int = 44_100, channels: int = 2
) -> AcousticFingerprint:
    """Fingerprint audio given as blocks of shape (frames, channels) (or (frames,) when mono), float in [-1, 1] or
    int16. The channels are mixed down to mono before Chromaprint sees them, as Chromaprint does itself."""
    if _CHROMAPRINT_ERROR is not None:
        raise FingerprintError("engine_unavailable", f"Chromaprint cannot be loaded ({_CHROMAPRINT_ERROR}).")
    if not isinstance(sample_rate, int | np.integer) or not 1_000 <= sample_rate <= 768_000:
        raise FingerprintError("audio_unreadable", f"Unsupported sample rate {sample_rate!r}.")
    if not isinstance(channels, int | np.integer) or not 1 <= channels <= 64:
        raise FingerprintError("audio_unreadable", f"Unsupported channel count {channels!r}.")
    fingerprinter = chromaprint.Fingerprinter(chromaprint.Fingerprinter.ALGORITHM_TEST2)
    fingerprinter.start(int(sample_rate), 1)
    frames, peak = 0, 0.0
    for block in blocks:
        mono = _mono_int16(block, channels)
        if not len(mono):
            continue
        frames += len(mono)
        peak = max(peak, float(np.abs(mono.astype(np.int32)).max()) / 32768.0)
        fingerprinter.feed(mono.tobytes())
    if frames == 0:
        raise FingerprintError("audio_too_short", "The audio has no samples.")
    if peak < SILENCE_PEAK:
        raise FingerprintError("audio_silent", f"The audio is silent (peak {20 * math.log10(peak or 1e-12):.0f} dBFS).")
    duration = frames / sample_rate
    try:
        encoded = fingerprinter.finish()
        items = np.array(chromaprint.decode_fingerprint(encoded)[0] if encoded else [], dtype=np.uint32)
    except chromaprint.FingerprintError:
        items = np.zeros(0, dtype=np.uint32)  # Chromaprint fails to finish when it saw too little audio
    if len(items) < MIN_FINGERPRINT_ITEMS:
        raise FingerprintError(
            "audio_too_short",
            f"{duration:.1f} s of audio give {len(items)} items; at least {MIN_FINGERPRINT_ITEMS} are needed "
            f"(about {MIN_SEGMENT_SECONDS + 2.7:.0f} s of sound).",
        )
    return AcousticFingerprint(items, duration)


def _mono_int16(block: np.ndarray, channels: int) -> np.ndarray:
    array = np.asarray(block)
    if array.ndim == 1 and channels == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != channels:
        raise FingerprintError(
            "audio_unreadable", f"Expected blocks of shape (frames, {channels}), got {getattr(array, 'shape', '?')}."
        )
    if array.dtype == np.int16:
        return (array.astype(np.int32).sum(axis=1) // channels).astype(np.int16)
    if array.dtype.kind != "f":
        raise FingerprintError("audio_unreadable", f"Expected float or int16 samples, got {array.dtype}.")
    mono = array.astype(np.float32).mean(axis=1)
    if not np.isfinite(mono).all():
        raise FingerprintError("audio_unreadable", "The audio contains NaN or infinite samples.")
    return np.clip(np.rint(mono * 32767.0), -32768, 32767).astype(np.int16)


# --- low-information detection -------------------------------------------------------------------------------------


def _informative(items: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per item, whether the audio around it changes: the mean number of bits that differ between consecutive items,
    over ``NOVELTY_ITEMS`` items, is at least ``MIN_NOVELTY_BITS``. ``starts`` are the recordings' first positions
    followed by the total length, so several concatenated recordings are handled at once."""
    total = len(items)
    if total == 0:
        return np.zeros(0, dtype=bool)
    change = np.zeros(total, dtype=np.float64)
    change[1:] = np.bitwise_count(items[1:] ^ items[:-1])
    first = starts[:-1][np.diff(starts) > 0]
    change[first] = change[np.minimum(first + 1, total - 1)]  # no predecessor: borrow the successor's change
    lengths = np.diff(starts)
    owner_start = np.repeat(starts[:-1], lengths)
    owner_end = np.repeat(starts[1:], lengths)
    position = np.arange(total)
    low = np.maximum(position - NOVELTY_ITEMS // 2, owner_start)
    high = np.minimum(position + NOVELTY_ITEMS // 2 + 1, owner_end)
    cumulative = np.concatenate([[0.0], np.cumsum(change)])
    return (cumulative[high] - cumulative[low]) / (high - low) >= MIN_NOVELTY_BITS


def _first_occurrences(keys: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per position, whether it is among the first ``MAX_KEY_REPEATS`` occurrences of its key within its group."""
    if len(keys) == 0:
        return np.zeros(0, dtype=bool)
    combined = (groups.astype(np.int64) << 32) | keys.astype(np.int64)
    order = np.argsort(combined, kind="stable")
    ordered = combined[order]
    new_run = np.ones(len(ordered), dtype=bool)
    new_run[1:] = ordered[1:] != ordered[:-1]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(len(ordered)), 0))
    keep = np.empty(len(keys), dtype=bool)
    keep[order] = np.arange(len(ordered)) - run_start < MAX_KEY_REPEATS
    return keep


def _query_positions(items: np.ndarray) -> np.ndarray:
    """Positions of a query worth looking up: informative, and not a key's fifth or later repetition."""
    keys = items >> _KEY_SHIFT
    mask = _informative(items, np.array([0, len(items)])) & _first_occurrences(keys, np.zeros(len(items), np.int64))
    return np.flatnonzero(mask)


# --- the index -----------------------------------------------------------------------------------------------------


class AcousticIndex:
    """Reference fingerprints and an inverted index from item keys (their high ``KEY_BITS`` bits) to positions.

    Add references, then :meth:`freeze` (queries freeze a changed index themselves). Queries on a frozen index only
    read, so threads may share it; adding and freezing must not overlap with queries. The arrays:
    ``items`` holds all references' items end to end, reference ``i`` at ``ref_starts[i]:ref_starts[i + 1]``;
    ``keys`` are the distinct indexed keys in ascending order, and the postings of ``keys[k]`` are
    ``postings[key_starts[k]:key_starts[k + 1]]``, each ``reference position << 32 | item offset``.
    """

    def __init__(self) -> None:
        self._pending: dict[int, AcousticFingerprint] = {}
        self._ref_ids = np.zeros(0, dtype=np.int64)
        self._ref_starts = np.zeros(1, dtype=np.int64)
        self._durations = np.zeros(0, dtype=np.float64)
        self._items = np.zeros(0, dtype=np.uint32)
        self._keys = np.zeros(0, dtype=np.uint32)
        self._key_starts = np.zeros(1, dtype=np.int64)
        self._postings = np.zeros(0, dtype=np.int64)
        self._position_of: dict[int, int] = {}
        self._frozen = True
        self.stop_listed_keys = 0  # keys left out of the postings because they occur too often

    def __len__(self) -> int:
        return len(self._ref_ids) + len(self._pending)

    def add(self, reference_id: int, fingerprint: AcousticFingerprint) -> None:
        """Add a reference recording. Ids are unique; adding one twice raises ``reference_duplicate``."""
        reference_id = int(reference_id)
        if reference_id in self._position_of or reference_id in self._pending:
            raise FingerprintError("reference_duplicate", f"Reference {reference_id} is already in the index.")
        if not isinstance(fingerprint, AcousticFingerprint):
            raise FingerprintError("fingerprint_corrupt", f"Expected an AcousticFingerprint, got {fingerprint!r}.")
        self._pending[reference_id] = fingerprint
        self._frozen = False

    def freeze(self) -> None:
        """Build the inverted index over all references added so far."""
        if self._frozen:
            return
        pending = list(self._pending.values())
        lengths = np.array([len(f.items) for f in pending], dtype=np.int64)
        self._ref_ids = np.concatenate([self._ref_ids, np.fromiter(self._pending, dtype=np.int64)])
        self._ref_starts = np.concatenate([self._ref_starts, self._ref_starts[-1] + np.cumsum(lengths)])
        self._durations = np.concatenate([self._durations, [f.duration_seconds for f in pending]])
        self._items = np.concatenate([self._items, *(f.items for f in pending)]).astype(np.uint32)
        self._pending = {}
        self._build_postings()
        self._position_of = {int(r): i for i, r in enumerate(self._ref_ids)}
        self._frozen = True

    def _build_postings(self) -> None:
        items, starts = self._items, self._ref_starts
        owner = np.repeat(np.arange(len(self._ref_ids)), np.diff(starts))
        keys = items >> _KEY_SHIFT
        positions = np.flatnonzero(_informative(items, starts) & _first_occurrences(keys, owner))
        keys = keys[positions]
        order = np.argsort(keys, kind="stable")
        keys, positions = keys[order], positions[order]
        distinct, counts = np.unique(keys, return_counts=True)
        limit = max(STOP_LIST_FLOOR, STOP_LIST_FACTOR * (counts.mean() if len(counts) else 0.0))
        kept = counts <= limit
        keep_position = np.repeat(kept, counts)
        self.stop_listed_keys = int((~kept).sum())
        self._keys = distinct[kept].astype(np.uint32)
        self._key_starts = np.concatenate([[0], np.cumsum(counts[kept])]).astype(np.int64)
        positions = positions[keep_position]
        # The reference and offset are packed into each posting: finding them from a global position would cost a
        # binary search per posting, the largest cost of a query.
        self._postings = (owner[positions] << 32) | (positions - starts[owner[positions]])

    def reference_ids(self) -> list[int]:
        """The ids of all references, in the order they were added."""
        return [int(r) for r in self._ref_ids] + list(self._pending)

    def fingerprint(self, reference_id: int) -> AcousticFingerprint:
        """The fingerprint stored for ``reference_id`` (``KeyError`` if absent)."""
        if int(reference_id) in self._pending:
            return self._pending[int(reference_id)]
        i = self._position_of[int(reference_id)]
        start, end = self._ref_starts[i], self._ref_starts[i + 1]
        return AcousticFingerprint(self._items[start:end], float(self._durations[i]))

    def memory_bytes(self) -> int:
        """Bytes held by the frozen index's arrays (fingerprints, keys, postings)."""
        return sum(int(array.nbytes) for array in self._arrays().values())

    # --- persistence ---

    def save(self, path: str | Path) -> None:
        """Write the index to one file: a header, the raw arrays, and a SHA-256 of everything before it. The caller
        makes the write atomic (temporary file and rename)."""
        self.freeze()
        arrays = self._arrays()
        header = {
            "engine": ENGINE_VERSION,
            "key_bits": KEY_BITS,
            "arrays": [[name, arrays[name].dtype.str, len(arrays[name])] for name in _INDEX_ARRAYS],
        }
        header_bytes = json.dumps(header, sort_keys=True).encode()
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            for chunk in (_INDEX_MAGIC, struct.pack("<II", _INDEX_VERSION, len(header_bytes)), header_bytes):
                out.write(chunk)
                digest.update(chunk)
            for name in _INDEX_ARRAYS:
                data = np.ascontiguousarray(arrays[name]).data.cast("B")
                out.write(data)
                digest.update(data)
            out.write(digest.digest())

    @classmethod
    def load(cls, path: str | Path) -> AcousticIndex:
        """Read a file written by :meth:`save`. A truncated, corrupt or foreign file raises ``index_corrupt``."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise FingerprintError("index_corrupt", f"Cannot read the index file: {exc}") from None
        try:
            return cls._decode(data)
        except FingerprintError:
            raise
        except Exception as exc:  # any structural surprise in a file is corruption, never a crash
            raise FingerprintError("index_corrupt", f"Index file is malformed: {exc}") from None

    @classmethod
    def _decode(cls, data: bytes) -> AcousticIndex:
        def corrupt(detail: str) -> FingerprintError:
            return FingerprintError("index_corrupt", detail)

        prefix = len(_INDEX_MAGIC) + 8
        if len(data) < prefix + 32 or not data.startswith(_INDEX_MAGIC):
            raise corrupt("Not an acoustic index file, or truncated.")
        if hashlib.sha256(data[:-32]).digest() != data[-32:]:
            raise corrupt("Index file checksum mismatch (truncated or damaged).")
        version, header_size = struct.unpack_from("<II", data, len(_INDEX_MAGIC))
        if version != _INDEX_VERSION:
            raise corrupt(f"Unsupported index file version {version}.")
        header = json.loads(data[prefix : prefix + header_size])
        if header.get("key_bits") != KEY_BITS:
            raise corrupt("The index was built with different key bits.")
        offset = prefix + header_size
        arrays: dict[str, np.ndarray] = {}
        for name, dtype, count in header["arrays"]:
            if name not in _INDEX_ARRAYS or name in arrays:
                raise corrupt(f"Unexpected array {name!r}.")
            kind = np.dtype(dtype)
            if kind.kind not in "iuf" or not 0 <= int(count) <= len(data):
                raise corrupt(f"Invalid array description for {name!r}.")
            arrays[name] = np.frombuffer(data, dtype=kind, count=int(count), offset=offset)
            offset += kind.itemsize * int(count)
        if offset != len(data) - 32 or set(arrays) != set(_INDEX_ARRAYS):
            raise corrupt("Index file layout does not add up.")
        index = cls()
        index._restore(arrays)
        return index

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "ref_ids": self._ref_ids,
            "ref_starts": self._ref_starts,
            "durations": self._durations,
            "items": self._items,
            "keys": self._keys,
            "key_starts": self._key_starts,
            "postings": self._postings,
        }

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        n = len(arrays["ref_ids"])
        starts, key_starts = arrays["ref_starts"], arrays["key_starts"]
        consistent = (
            len(starts) == n + 1
            and len(arrays["durations"]) == n
            and starts[0] == 0
            and starts[-1] == len(arrays["items"])
            and bool(np.all(np.diff(starts) >= 0))
            and len(key_starts) == len(arrays["keys"]) + 1
            and key_starts[0] == 0
            and key_starts[-1] == len(arrays["postings"])
            and bool(np.all(np.diff(key_starts) >= 0))
            and bool(np.all(np.diff(arrays["keys"].astype(np.int64)) > 0))
            and _postings_valid(arrays["postings"], starts)
            and len(np.unique(arrays["ref_ids"])) == n
        )
        if not consistent:
            raise FingerprintError("index_corrupt", "Index file arrays are inconsistent.")
        self._ref_ids = arrays["ref_ids"].astype(np.int64)
        self._ref_starts = arrays["ref_starts"].astype(np.int64)
        self._durations = arrays["durations"].astype(np.float64)
        self._items = arrays["items"].astype(np.uint32)
        self._keys = arrays["keys"].astype(np.uint32)
        self._key_starts = arrays["key_starts"].astype(np.int64)
        self._postings = arrays["postings"].astype(np.int64)
        self._position_of = {int(r): i for i, r in enumerate(self._ref_ids)}
        self.stop_listed_keys = -1  # not recorded in the file
        self._frozen = True

    # --- querying ---

    def query(
        self, fingerprint: AcousticFingerprint, *, limit: int = 10, exclude: int | None = None
    ) -> list[AcousticMatch]:
        """References whose recordings share at least one matching segment with ``fingerprint``, best first (by
        score, then matched seconds), at most ``limit``. Not filtered by any threshold; ``exclude`` leaves one
        reference out (calibration queries a reference against the others)."""
        self.freeze()
        query_items = fingerprint.items
        if limit <= 0 or len(self._ref_ids) == 0 or len(query_items) == 0:
            return []
        excluded = self._position_of.get(int(exclude), -1) if exclude is not None else -1
        matches = []
        for ref, deltas, votes in self._candidates(query_items, excluded):
            match = self._verify(query_items, ref, deltas, votes)
            if match is not None:
                matches.append(match)
        matches.sort(key=lambda m: (-m.score, -m.matched_seconds, m.reference_id))
        return matches[:limit]

    def _candidates(self, query_items: np.ndarray, excluded: int) -> list[tuple[int, list[int], int]]:
        """(reference position, best alignment offsets, votes of the best) for alignments with enough votes."""
        positions = _query_positions(query_items)
        if not len(positions) or not len(self._keys):
            return []
        keys = query_items[positions] >> _KEY_SHIFT
        slots = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        hit = self._keys[slots] == keys
        slots, positions = slots[hit], positions[hit]
        begins, lengths = self._key_starts[slots], self._key_starts[slots + 1] - self._key_starts[slots]
        total = int(lengths.sum())
        if total == 0:
            return []
        # Expand the posting ranges without a Python loop: each range's indices are its begin plus 0..length-1.
        range_offsets = np.repeat(begins - (np.cumsum(lengths) - lengths), lengths)
        postings = self._postings[range_offsets + np.arange(total)]
        # Same reference and same (reference offset - query offset) = same ballot; the offset is kept positive.
        ballots = postings - np.repeat(positions, lengths) + 2**31
        alignments, votes = np.unique(ballots, return_counts=True)
        strong = votes >= MIN_VOTES
        alignments, votes = alignments[strong], votes[strong]
        order = np.argsort(-votes, kind="stable")
        by_reference: dict[int, tuple[list[int], int]] = {}
        for alignment, count in zip(alignments[order].tolist(), votes[order].tolist(), strict=True):
            ref, delta = alignment >> 32, (alignment & 0xFFFFFFFF) - 2**31
            if ref == excluded:
                continue
            if ref not in by_reference:
                if len(by_reference) >= MAX_CANDIDATES:
                    continue
                by_reference[ref] = ([delta], count)
                continue
            chosen = by_reference[ref][0]
            if len(chosen) < MAX_ALIGNMENTS_PER_REFERENCE and all(abs(delta - d) > 1 for d in chosen):
                chosen.append(delta)
        return [(ref, deltas_, count) for ref, (deltas_, count) in by_reference.items()]

    def _verify(self, query_items: np.ndarray, ref: int, deltas: list[int], votes: int) -> AcousticMatch | None:
        """Find the matching segments of the given alignments of the query against reference ``ref``."""
        start, end = int(self._ref_starts[ref]), int(self._ref_starts[ref + 1])
        reference = self._items[start:end]
        curves: dict[float, float] = {}
        alignments = []  # (score, delta, segments as (cue start, cue end, delta, error bits, counted items))
        for delta in deltas:
            found, curve = _aligned_segments(query_items, reference, delta)
            for second, ber in curve:
                curves[second] = min(ber, curves.get(second, 1.0))
            if found:
                error_bits, counted = sum(s[3] for s in found), sum(s[4] for s in found)
                alignments.append((1.0 - error_bits / (32.0 * counted), delta, found))
        if not alignments:
            return None
        # The score is the best alignment's alone: music that repeats itself (a loop, a recurring backing) also
        # aligns at the repetition's period, less well, and must not dilute a perfect copy. Other alignments add
        # only the stretches of the cue that the better ones leave unexplained (a reference used twice).
        alignments.sort(key=lambda alignment: -alignment[0])
        score, best_delta, segments = alignments[0]
        segments = list(segments)
        for _score, _delta, found in alignments[1:]:
            segments += [s for s in found if all(s[1] <= t[0] or s[0] >= t[1] for t in segments)]
        segments.sort()
        return AcousticMatch(
            reference_id=int(self._ref_ids[ref]),
            score=score,
            matched_seconds=sum(s[1] - s[0] for s in segments) * SECONDS_PER_ITEM,
            segments=tuple(
                Segment(
                    cue_start=a * SECONDS_PER_ITEM,
                    cue_end=b * SECONDS_PER_ITEM,
                    reference_start=(a + d) * SECONDS_PER_ITEM,
                    reference_end=(b + d) * SECONDS_PER_ITEM,
                    bit_error_rate=bits / (32.0 * n),
                )
                for a, b, d, bits, n in segments
            ),
            ber_curve=tuple(sorted(curves.items())),
            offset_seconds=best_delta * SECONDS_PER_ITEM,
            votes=votes,
        )


def _postings_valid(postings: np.ndarray, starts: np.ndarray) -> bool:
    if len(postings) == 0:
        return True
    refs, offsets = postings >> 32, postings & 0xFFFFFFFF
    if postings.min() < 0 or refs.max() >= len(starts) - 1:
        return False
    return bool(np.all(offsets < starts[refs + 1] - starts[refs]))


def _aligned_segments(
    query: np.ndarray, reference: np.ndarray, delta: int
) -> tuple[list[tuple[int, int, int, int, int]], list[tuple[float, float]]]:
    """Segments of ``query`` matching ``reference`` shifted by ``delta`` items (reference position = query position
    + delta), and the per-second bit error curve of the whole overlap."""
    first, last = max(0, -delta), min(len(query), len(reference) - delta)
    if last - first < MIN_SEGMENT_ITEMS:
        return [], []
    q, r = query[first:last], reference[first + delta : last + delta]
    errors = np.bitwise_count(q ^ r).astype(np.float64)
    informative = _informative(q, np.array([0, len(q)])) & _informative(r, np.array([0, len(r)]))
    cumulative = np.concatenate([[0.0], np.cumsum(errors)])
    position = np.arange(len(errors))
    low = np.maximum(position - SMOOTHING_ITEMS // 2, 0)
    high = np.minimum(position + SMOOTHING_ITEMS // 2, len(errors))
    smoothed = (cumulative[high] - cumulative[low]) / (high - low) / 32.0
    below = np.concatenate([[False], smoothed <= SEGMENT_MAX_BER, [False]])
    edges = np.flatnonzero(below[1:] != below[:-1])
    segments = []
    damaged = errors > 32 * SEGMENT_MAX_BER
    for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
        # Smoothing smears a segment's edges by up to half a window; its first and last items must match themselves.
        while a < b and damaged[a]:
            a += 1
        while b > a and damaged[b - 1]:
            b -= 1
        counted = informative[a:b]
        n = int(counted.sum())
        if n >= MIN_SEGMENT_ITEMS:
            segments.append((a + first, b + first, delta, int(errors[a:b][counted].sum()), n))
    seconds = np.floor((position + first) * SECONDS_PER_ITEM).astype(np.int64)
    totals = np.bincount(seconds - seconds[0], weights=errors)
    counts = np.bincount(seconds - seconds[0])
    curve = [(float(seconds[0] + i), float(totals[i] / (32.0 * counts[i]))) for i in range(len(counts)) if counts[i]]
    return segments, curve
