"""Symbolic (MIDI melody) similarity: recall per transformation, false-positive rate, and check latency by index size.

References are works of music21's bundled corpus (Bach chorales, Ryan's Mammoth Collection fiddle tunes, Palestrina,
O'Neill's Irish tunes), converted once to MIDI and cached under var/bench-cache/. Near-duplicate works (the same
chorale melody harmonised under several BWV numbers, variants of one fiddle tune) are not unrelated, so they are
clustered first and only one work per cluster enters the index; the rest are set aside and counted.

Some references are held back as query sources (they stay in the index); each gives one query per transformation:
transposed, tempo changed, re-orchestrated, melody moved to another voice and octave, 10% of melody notes changed,
ornamented, and an 8-bar quote spliced into an unrelated longer cue. Negatives are unrelated generated cues
(library.music.sketch) and every reference queried against the rest of the index.

The threshold is chosen on a calibration half (even-numbered sources, negatives and references) as the smallest
score whose false-positive rate per pair is <= 1e-3; recall and false-positive rate are reported on the other half.
Latency is measured at each index size, the index filled up with random-walk melodies beyond the music21 works;
the brute-force baseline aligns the query against every reference (Smith-Waterman over pitch intervals, no index),
timed on a sample of references in the same run and extrapolated linearly to the index size. Recall and
false-positive rate at 10k and 100k apply the threshold calibrated at 1k.

The first run converts some 1,750 corpus files with music21 (several minutes on two cores); later runs read the
cache and take a few minutes, most of it building the 100k index.

Usage: python benchmarks/similarity.py [--works 1000] [--sources 120] [--negatives 200] [--sizes 1000,10000,100000]
Targets (issue): recall >= 0.95 per transformation at FPR <= 1e-3 per pair; p50 check <= 100 ms at 100k references;
p50 latency at 100k < 3x that at 10k; index memory reported.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pretty_midi  # noqa: E402

from benchmarks.table import print_aligned  # noqa: E402
from library.fingerprints import FingerprintError  # noqa: E402
from library.fingerprints.symbolic import (  # noqa: E402
    DEFAULT_THRESHOLD,
    Line,
    SymbolicFingerprint,
    SymbolicIndex,
    smith_waterman,
    symbolic_fingerprint,
)

CACHE_VERSION = "music21-works-v1"
# Corpus folders and how many files to take from each, in this order; opus files (several tunes) count once.
SOURCES = (("bach", 450), ("ryansMammoth", 1100), ("palestrina", 200), ("oneills1850", 4))
TRANSFORMS = ("transpose", "tempo", "instruments", "voice+octave", "10% notes changed", "ornaments", "8-bar quote")
FPR_TARGET = 1e-3
LIMIT = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", type=int, default=1000, help="music21 works in the index (default 1000)")
    parser.add_argument("--sources", type=int, default=120, help="held-back references turned into queries")
    parser.add_argument("--negatives", type=int, default=200, help="unrelated generated cues")
    parser.add_argument("--sizes", default="1000,10000,100000", help="index sizes for latency (comma-separated)")
    parser.add_argument("--latency-queries", type=int, default=150, help="queries timed per size")
    parser.add_argument("--cache", default=str(ROOT / "var" / "bench-cache"), help="cache directory")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]

    started = time.perf_counter()
    works = load_corpus(Path(args.cache))
    references, set_aside = dedupe(works)
    if len(references) < args.works:
        print(f"note: only {len(references)} distinct works available; the index holds all of them")
    references = references[: args.works]
    print(
        f"corpus: {len(works)} music21 works fingerprinted, {set_aside} set aside as near-duplicates of another "
        f"work, {len(references)} in the index"
    )

    rng = random.Random(1)  # noqa: S311 - reproducible benchmark, not secrets
    source_pool = [ref for ref in references if len(melody_part(ref["score"]).notes) >= 40]
    sources = rng.sample(source_pool, min(args.sources, len(source_pool)))
    queries = make_queries(sources, rng)
    negatives = make_negatives(args.negatives)
    print(
        f"queries: {len(sources)} sources x {len(TRANSFORMS)} transformations = {len(queries)}; "
        f"{len(negatives)} unrelated generated cues\n"
    )

    index = build_index({ref["id"]: ref["fp"] for ref in references})
    calibration = calibrate(index, references, queries, negatives)
    threshold = calibration["threshold"]

    rows = quality_rows(calibration)
    latency_rows, size_notes = measure_sizes(index, references, queries, negatives, sizes, threshold, args)
    rows += latency_rows
    print()
    print_table(rows)
    print()
    print(f"threshold: {threshold:.3f} (calibrated in this run; DEFAULT_THRESHOLD in the code is {DEFAULT_THRESHOLD})")
    for line in score_notes(calibration) + size_notes:
        print(line)
    print(f"total time: {(time.perf_counter() - started) / 60:.1f} min")


# --- the corpus ------------------------------------------------------------------------------------------------


def load_corpus(cache: Path) -> list[dict]:
    """music21 works as MIDI (converted once, cached), parsed and fingerprinted."""
    path = cache / f"{CACHE_VERSION}.json"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print("converting music21's corpus to MIDI (once; cached in", path, ")", flush=True)
        from multiprocessing import Pool

        from music21 import corpus

        every = corpus.getPaths()
        chosen = [p for folder, limit in SOURCES for p in [q for q in every if f"/{folder}/" in str(q)][:limit]]
        with Pool(min(2, os.cpu_count() or 1)) as pool:
            converted = pool.map(convert_corpus_file, chosen, chunksize=8)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps([work for batch in converted for work in batch]))
        scratch.replace(path)
    works = []
    for number, work in enumerate(json.loads(path.read_text())):
        try:
            score = pretty_midi.PrettyMIDI(io.BytesIO(bytes.fromhex(work["midi"])))
            fp = symbolic_fingerprint(score)
        except FingerprintError:
            continue
        works.append({"id": number + 1, "title": work["title"], "path": work["path"], "score": score, "fp": fp})
    return works


def convert_corpus_file(path) -> list[dict]:
    """One corpus file (a score or an opus of several) as MIDI: one instrument per part, 100 bpm, ties merged."""
    import warnings

    from music21 import chord, corpus, meter

    warnings.filterwarnings("ignore")
    try:
        parsed = corpus.parse(path)
    except Exception:  # noqa: BLE001 - a file music21 cannot parse is simply not part of the benchmark
        return []
    scores = list(parsed.scores) if type(parsed).__name__ == "Opus" else [parsed]
    out = []
    for number, score in enumerate(scores):
        try:
            beat = 60.0 / 100.0
            midi = pretty_midi.PrettyMIDI(initial_tempo=100.0)
            signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
            if signature is not None and signature.denominator in (1, 2, 4, 8, 16):
                midi.time_signature_changes.append(
                    pretty_midi.TimeSignature(signature.numerator, signature.denominator, 0.0)
                )
            for k, part in enumerate(list(score.parts) or [score]):
                instrument = pretty_midi.Instrument(program=(0, 40, 41, 42, 32, 68, 71, 73)[k % 8])
                for element in part.stripTies().flatten().notes:
                    start = float(element.offset) * beat
                    end = start + max(float(element.quarterLength), 0.125) * beat
                    pitches = (
                        [p.midi for p in element.pitches] if isinstance(element, chord.Chord) else [element.pitch.midi]
                    )
                    instrument.notes.extend(pretty_midi.Note(90, p, start, end) for p in pitches if 0 <= p < 128)
                if instrument.notes:
                    midi.instruments.append(instrument)
            if midi.instruments:
                buffer = io.BytesIO()
                midi.write(buffer)
                title = (score.metadata.title if score.metadata is not None else "") or ""
                rel = str(path).split("/corpus/")[-1]
                out.append({"path": rel, "number": number, "title": title, "midi": buffer.getvalue().hex()})
        except Exception:  # noqa: BLE001 - the same: an unconvertible tune is skipped
            continue
    return out


def dedupe(works: list[dict]) -> tuple[list[dict], int]:
    """One work per cluster of near-duplicates: works with the same title, or whose melodies (top lines) share at
    least half of the smaller one's distinct 6-note interval sequences; the same chorale tune under another
    harmonisation, the same fiddle tune under another name and key. Independent of the detector's scoring."""
    parent = list(range(len(works)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def join(a: int, b: int) -> None:
        parent[root(a)] = root(b)

    by_title: dict[str, int] = {}
    grams: list[set] = []
    postings: dict[tuple, list[int]] = defaultdict(list)
    for k, work in enumerate(works):
        title = " ".join(work["title"].lower().split())
        if title:
            if title in by_title:
                join(k, by_title[title])
            by_title.setdefault(title, k)
        top = max(work["fp"].lines, key=lambda line: float(np.mean(line.pitches)))
        steps = np.diff(top.pitches.astype(int)).tolist()
        seen = {tuple(steps[i : i + 5]) for i in range(len(steps) - 4)}
        grams.append(seen)
        for gram in seen:
            postings[gram].append(k)
    for k, mine in enumerate(grams):
        shared: dict[int, int] = defaultdict(int)
        for gram in mine:
            owners = postings[gram]
            if len(owners) > 200:  # a scale fragment half the corpus has says nothing about kinship
                continue
            for other in owners:
                if other > k:
                    shared[other] += 1
        for other, count in shared.items():
            if count >= 0.5 * max(1, min(len(mine), len(grams[other]))):
                join(k, other)
    kept, seen_roots = [], set()
    for k, work in enumerate(works):
        if root(k) not in seen_roots:
            seen_roots.add(root(k))
            kept.append(work)
    return kept, len(works) - len(kept)


# --- queries ---------------------------------------------------------------------------------------------------


def melody_part(score: pretty_midi.PrettyMIDI) -> pretty_midi.Instrument:
    """The highest-sounding part with enough notes: the soprano of a chorale, the tune of a fiddle tune."""
    parts = [inst for inst in score.instruments if not inst.is_drum and len(inst.notes) >= 16]
    parts = parts or [inst for inst in score.instruments if inst.notes]
    return max(parts, key=lambda inst: float(np.mean([note.pitch for note in inst.notes])))


def rebuild(score: pretty_midi.PrettyMIDI, parts, *, stretch: float = 1.0, bpm: float = 100.0):
    """A new score from (program, notes) parts, times multiplied by ``stretch``; the meter is kept."""
    out = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    for signature in score.time_signature_changes[:1]:
        out.time_signature_changes.append(pretty_midi.TimeSignature(signature.numerator, signature.denominator, 0.0))
    for program, notes, *drum in parts:
        instrument = pretty_midi.Instrument(program=program, is_drum=bool(drum and drum[0]))
        instrument.notes = [
            pretty_midi.Note(note.velocity, int(min(127, max(0, note.pitch))), note.start * stretch, note.end * stretch)
            for note in notes
        ]
        out.instruments.append(instrument)
    return out


def copy_notes(notes, semitones: int = 0):
    return [pretty_midi.Note(n.velocity, n.pitch + semitones, n.start, n.end) for n in notes]


def new_accompaniment(melody, rng: random.Random):
    """Block chords, one per two seconds, on the melody's own pitch classes: a new harmonisation."""
    end = max(note.end for note in melody)
    out, t = [], 0.0
    while t < end:
        sounding = [n.pitch for n in melody if n.start <= t < n.end] or [melody[0].pitch]
        root = 48 + sounding[0] % 12 + rng.choice((0, -3, -5))
        out += [pretty_midi.Note(70, root + step, t, t + 2.0) for step in (0, 4, 7)]
        t += 2.0
    return out


def make_queries(sources: list[dict], rng: random.Random) -> list[dict]:
    queries = []
    for number, source in enumerate(sources):
        score = source["score"]
        melody = melody_part(score)
        down = rng.choice((-1, 1)) * rng.randint(1, 6)
        factor = rng.uniform(0.8, 1.25)
        made = {
            "transpose": rebuild(score, [(i.program, copy_notes(i.notes, down)) for i in score.instruments]),
            "tempo": rebuild(score, [(i.program, i.notes) for i in score.instruments], stretch=1 / factor),
            "instruments": rebuild(
                score,
                [(rng.choice((19, 48, 56, 60, 68, 89)), i.notes) for i in score.instruments]
                + [(rng.choice((40, 73)), copy_notes(melody.notes, 12)), (0, drum_groove(score), True)],
            ),
            "voice+octave": rebuild(
                score,
                [
                    (42, copy_notes(melody.notes, -12 * rng.choice((1, 2)))),
                    (73, counter_melody(melody.notes, rng)),
                    (48, new_accompaniment(melody.notes, rng)),
                ],
            ),
            "10% notes changed": rebuild(
                score, [(73, changed(melody.notes, rng)), (48, new_accompaniment(melody.notes, rng))]
            ),
            "ornaments": rebuild(
                score, [(73, ornamented(melody.notes, rng)), (48, new_accompaniment(melody.notes, rng))]
            ),
            "8-bar quote": spliced_quote(score, melody, rng, seed=number),
        }
        for transform, cue in made.items():
            queries.append({"source": source["id"], "transform": transform, "half": number % 2, "score": cue})
    for query in queries:
        query["fp"] = symbolic_fingerprint(query.pop("score"))
    return queries


def drum_groove(score):
    end = score.get_end_time()
    return [pretty_midi.Note(90, (36, 42, 38, 42)[k % 4], k * 0.3, k * 0.3 + 0.1) for k in range(int(end / 0.3))]


def counter_melody(melody, rng: random.Random):
    """A new line above the moved melody, in quavers: the melody is no longer the top of the texture."""
    end = max(note.end for note in melody)
    pitch, t, out = 84, 0.0, []
    while t < end:
        pitch = max(76, min(96, pitch + rng.choice((-2, -1, 1, 2))))
        out.append(pretty_midi.Note(60, pitch, t, t + 0.3))
        t += 0.3
    return out


def changed(melody, rng: random.Random):
    out = copy_notes(melody)
    for k in rng.sample(range(len(out)), max(1, len(out) // 10)):
        out[k].pitch += rng.choice((-2, -1, 1, 2))
    return out


def ornamented(melody, rng: random.Random):
    """A grace note (a step above, an eighth of the note) before 10% of the notes."""
    out = []
    chosen = set(rng.sample(range(len(melody)), max(1, len(melody) // 10)))
    for k, note in enumerate(melody):
        if k in chosen and note.end - note.start > 0.2:
            grace = (note.end - note.start) / 8
            out.append(pretty_midi.Note(note.velocity, note.pitch + 2, note.start, note.start + grace))
            out.append(pretty_midi.Note(note.velocity, note.pitch, note.start + grace, note.end))
        else:
            out.append(pretty_midi.Note(note.velocity, note.pitch, note.start, note.end))
    return out


def spliced_quote(score, melody, rng: random.Random, *, seed: int):
    """8 bars of the melody, transposed and slowed by 10%, in place of bars 13-20 of a 40-bar generated cue's
    melody (the generated cue is in no index)."""
    from library.music.sketch import Sketch, sketch_midi

    downbeats = list(score.get_downbeats()) + [score.get_end_time()]
    bar = downbeats[1] - downbeats[0] if len(downbeats) > 2 else 2.4
    first = rng.randrange(0, max(1, len(downbeats) - 10))
    start, end = downbeats[first], downbeats[first] + 8 * bar
    quote = [n for n in melody.notes if start <= n.start < end]
    shift = rng.choice((-1, 1)) * rng.randint(1, 6)
    host = pretty_midi.PrettyMIDI(
        io.BytesIO(
            sketch_midi(Sketch(tonic=rng.choice(("C", "D", "F", "A")), bars=40, tempo_bpm=96, seed=90_000 + seed))
        )
    )
    at, slow = 12 * 2.5, 1 / 0.9  # bar 13 at 96 bpm in 4/4
    lead = next(inst for inst in host.instruments if inst.name == "Melody")
    span = (quote[-1].end - start) * slow if quote else 0.0
    lead.notes = [n for n in lead.notes if not at <= n.start < at + span]
    lead.notes += [
        pretty_midi.Note(n.velocity, n.pitch + shift, at + (n.start - start) * slow, at + (n.end - start) * slow)
        for n in quote
    ]
    lead.notes.sort(key=lambda n: n.start)
    return host


def make_negatives(count: int) -> list[SymbolicFingerprint]:
    """Unrelated cues from the demo generator: other seeds, keys, tempi, lengths; a third with drums."""
    from library.music.sketch import Sketch, sketch_midi

    out = []
    for n in range(count):
        data = sketch_midi(
            Sketch(
                tonic=("C", "D", "E", "F", "G", "A", "Bb")[n % 7],
                mode=("major", "minor")[n % 2],
                tempo_bpm=70 + (n * 37) % 90,
                bars=16 + (n * 13) % 48,
                drums=n % 3 == 0,
                seed=50_000 + n,
            )
        )
        out.append(symbolic_fingerprint(pretty_midi.PrettyMIDI(io.BytesIO(data))))
    return out


# --- calibration and recall ------------------------------------------------------------------------------------


def build_index(fingerprints: dict[int, SymbolicFingerprint]) -> SymbolicIndex:
    index = SymbolicIndex()
    for reference_id, fp in fingerprints.items():
        index.add(reference_id, fp)
    index.freeze()
    return index


def calibrate(index: SymbolicIndex, references, queries, negatives) -> dict:
    """Scores of every negative pair (by kind) and of every true pair, split into halves; the threshold from half
    0 over all kinds of negative pairs."""
    size = len(index)
    negative_scores: dict[tuple[int, str], list[float]] = defaultdict(list)
    negative_pairs: dict[tuple[int, str], int] = defaultdict(int)
    for number, fp in enumerate(negatives):
        negative_scores[(number % 2, "unrelated cues")] += [m.score for m in index.query(fp, limit=LIMIT)]
        negative_pairs[(number % 2, "unrelated cues")] += size
    for number, ref in enumerate(references):
        matches = index.query(ref["fp"], limit=LIMIT, exclude=ref["id"])
        negative_scores[(number % 2, "reference vs rest")] += [m.score for m in matches]
        negative_pairs[(number % 2, "reference vs rest")] += size - 1
    true_scores: dict[tuple[int, str], list[float]] = defaultdict(list)
    for query in queries:
        matches = index.query(query["fp"], limit=LIMIT)
        true = [m.score for m in matches if m.reference_id == query["source"]]
        kind = (query["half"], "transformed query vs others")
        negative_scores[kind] += [m.score for m in matches if m.reference_id != query["source"]]
        negative_pairs[kind] += size - 1
        true_scores[(query["half"], query["transform"])].append(true[0] if true else 0.0)
    calibration_scores = [score for (half, _), scores in negative_scores.items() if half == 0 for score in scores]
    calibration_pairs = sum(pairs for (half, _), pairs in negative_pairs.items() if half == 0)
    return {
        "threshold": threshold_for(calibration_scores, calibration_pairs, FPR_TARGET),
        "strict_threshold": threshold_for(calibration_scores, calibration_pairs, FPR_TARGET / 10),
        "negative_scores": negative_scores,
        "negative_pairs": negative_pairs,
        "true_scores": true_scores,
    }


def threshold_for(scores: list[float], pairs: int, rate: float) -> float:
    """The smallest threshold t with #(score >= t) <= rate * pairs (pairs not returned count as below)."""
    allowed = int(rate * pairs)
    ranked = sorted(scores, reverse=True)
    if allowed >= len(ranked):
        return 1e-3
    # Just above the (allowed + 1)-th highest score, so that at most `allowed` scores reach it.
    return float(np.nextafter(ranked[allowed], np.inf))


def quality_rows(calibration: dict) -> list[tuple]:
    threshold, strict = calibration["threshold"], calibration["strict_threshold"]
    rows = []
    for transform in TRANSFORMS:
        scores = calibration["true_scores"][(1, transform)]
        recall = sum(score >= threshold for score in scores) / max(1, len(scores))
        rows.append((f"recall: {transform} (n={len(scores)})", f"{recall:.3f}", "-", ">= 0.95"))
    for half, name in ((0, "calibration half"), (1, "evaluation half")):
        kinds = sorted(kind for h, kind in calibration["negative_pairs"] if h == half)
        pairs = sum(calibration["negative_pairs"][(half, kind)] for kind in kinds)
        false = sum(score >= threshold for kind in kinds for score in calibration["negative_scores"][(half, kind)])
        rows.append((f"FPR per pair, {name} ({pairs:,} pairs)", f"{false / pairs:.2e}", "-", "<= 1e-3"))
        if half == 1:
            for kind in kinds:
                kind_pairs = calibration["negative_pairs"][(half, kind)]
                kind_false = sum(score >= threshold for score in calibration["negative_scores"][(half, kind)])
                rows.append((f"  of which {kind} ({kind_pairs:,} pairs)", f"{kind_false / kind_pairs:.2e}", "-", "-"))
    evaluation = [
        score for (half, _), scores in calibration["negative_scores"].items() if half == 1 for score in scores
    ]
    evaluation_pairs = sum(pairs for (half, _), pairs in calibration["negative_pairs"].items() if half == 1)
    every = [score for transform in TRANSFORMS for score in calibration["true_scores"][(1, transform)]]
    for name, value in (
        (f"FPR 1e-4 (threshold {strict:.2f})", strict),
        (f"DEFAULT_THRESHOLD ({DEFAULT_THRESHOLD})", DEFAULT_THRESHOLD),
    ):
        recall = sum(score >= value for score in every) / max(1, len(every))
        rows.append((f"recall, all transformations, at {name}", f"{recall:.3f}", "-", "-"))
        false = sum(score >= value for score in evaluation) / evaluation_pairs
        rows.append((f"FPR per pair, evaluation half, at {name}", f"{false:.2e}", "-", "-"))
    return rows


def score_notes(calibration: dict) -> list[str]:
    """True-pair score quantiles per transformation, evaluation half."""
    out = []
    for transform in TRANSFORMS:
        scores = np.array(calibration["true_scores"][(1, transform)])
        low, median = np.percentile(scores, 5), np.median(scores)
        out.append(f"  {transform}: true-pair score 5th percentile {low:.1f}, median {median:.1f}")
    return out


# --- index sizes and latency -----------------------------------------------------------------------------------


def filler(number: int) -> SymbolicFingerprint:
    """A random-walk piece: a melody of 60-240 notes in some scale and rhythm, and a slower bass line."""
    rng = np.random.default_rng(number)
    scale = np.array(((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9, 12, 14))[number % 3])
    beat = 60.0 / rng.uniform(60, 160)
    lines = []
    for voice, (low, count, lengths) in enumerate(((60, 60 + number % 181, (0.5, 1, 1, 1.5, 2)), (36, 30, (2, 4)))):
        steps = np.cumsum(rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, -3), size=count)) + 7 + voice
        degrees = np.abs((steps + 70) % 28 - 14)  # reflect within two octaves
        pitches = low + int(rng.integers(0, 12)) + 12 * (degrees // 7) + scale[degrees % 7] % 12
        durations = rng.choice(lengths, size=count) * beat
        onsets = np.concatenate(([0.0], np.cumsum(durations)[:-1]))
        lines.append(Line(onsets.astype(np.float32), durations.astype(np.float32), pitches.astype(np.uint8)))
    end = float(max(line.onsets[-1] + line.durations[-1] for line in lines))
    downbeats = np.arange(0.0, end, 4 * beat, dtype=np.float32)
    return SymbolicFingerprint(lines=tuple(lines), downbeats=downbeats, duration_seconds=end)


def measure_sizes(index, references, queries, negatives, sizes, threshold, args):
    rows, notes = [], []
    timed = [q for q in queries if q["half"] == 1]
    timed = (timed + [{"fp": fp, "source": None, "transform": None} for fp in negatives[1::2]])[: args.latency_queries]
    random.Random(2).shuffle(timed)  # noqa: S311
    base = {ref["id"]: ref["fp"] for ref in references}
    p50s = {}
    for size in sizes:
        if size == len(index):
            sized = index
        else:
            gc.collect()
            fps = dict(base)
            start = time.perf_counter()
            for number in range(max(0, size - len(fps))):
                fps[10_000_000 + number] = filler(number)
            sized = build_index(fps)
            del fps
            notes.append(
                f"index of {size:,}: built (fillers generated and frozen) in {time.perf_counter() - start:.1f} s"
            )
        latencies, cpu, hits, total, false, pairs = [], [], 0, 0, 0, 0
        for query in timed:
            start, start_cpu = time.perf_counter(), time.thread_time()
            matches = sized.query(query["fp"], limit=LIMIT)
            latencies.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
            if query["source"] is None:
                false += sum(m.score >= threshold for m in matches)
                pairs += len(sized)
            else:
                total += 1
                hits += any(m.reference_id == query["source"] and m.score >= threshold for m in matches)
        p50 = statistics.median(latencies)
        p95 = float(np.percentile(latencies, 95))
        p50s[size] = (p50, statistics.median(cpu))
        base_ms = brute_force_ms(sized, timed[:10])
        rows.append((f"check latency p50 at {size:,} refs (ms)", f"{p50:.1f}", f"{base_ms:.0f}", "<= 100 at 100k"))
        rows.append((f"check latency p95 at {size:,} refs (ms)", f"{p95:.1f}", "-", "-"))
        # On a shared machine wall time includes waiting for a core; CPU time is what one query costs.
        rows.append((f"check CPU time p50 at {size:,} refs (ms)", f"{statistics.median(cpu):.1f}", "-", "-"))
        rows.append((f"recall, all transformations, at {size:,} refs", f"{hits / max(1, total):.3f}", "-", ">= 0.95"))
        rows.append((f"FPR per pair, unrelated cues, at {size:,} refs", f"{false / max(1, pairs):.1e}", "-", "<= 1e-3"))
        rows.append((f"index memory at {size:,} refs (MB)", f"{sized.memory_bytes() / 1e6:.1f}", "-", "reported"))
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "symbolic.idx"
            start = time.perf_counter()
            sized.save(path)
            saved = time.perf_counter() - start
            start = time.perf_counter()
            SymbolicIndex.load(path)
            loaded = time.perf_counter() - start
            notes.append(
                f"index of {size:,}: file {path.stat().st_size / 1e6:.1f} MB, save {saved:.2f} s, load {loaded:.2f} s; "
                f"{statistics.mean(len(sized.fingerprint(i).to_bytes()) for i in sized.reference_ids()[:1000]):.0f} "
                "bytes per fingerprint (mean of the first 1,000 references: music21 works)"
            )
        print(
            f"  size {size:,}: p50 {p50:.1f} ms (CPU {statistics.median(cpu):.1f} ms), p95 {p95:.1f} ms, "
            f"brute force ~{base_ms:.0f} ms",
            flush=True,
        )
        if sized is not index:
            del sized
    if 10_000 in p50s and 100_000 in p50s:
        growth = p50s[100_000][0] / p50s[10_000][0]
        rows.append(("p50 latency growth 10k -> 100k (x)", f"{growth:.2f}", "10.0 (linear)", "< 3"))
        growth = p50s[100_000][1] / p50s[10_000][1]
        rows.append(("p50 CPU time growth 10k -> 100k (x)", f"{growth:.2f}", "10.0 (linear)", "< 3"))
    return rows, notes


def brute_force_ms(index: SymbolicIndex, queries, sample: int = 150) -> float:
    """Milliseconds to align a query against every reference without an index: Smith-Waterman on pitch intervals
    (transposition-invariant) between each query line and each reference line, timed on ``sample`` references
    and scaled to the index size."""
    ids = index.reference_ids()
    picked = random.Random(3).sample(ids, min(sample, len(ids)))  # noqa: S311
    start = time.perf_counter()
    for query in queries:
        for reference_id in picked:
            for line in query["fp"].lines:
                mine = np.diff(line.pitches.astype(int))
                for other in index.fingerprint(reference_id).lines:
                    theirs = np.diff(other.pitches.astype(int))
                    smith_waterman(np.where(mine[:, None] == theirs[None, :], 1.0, -1.0), gap=-1.0)
    per_reference = (time.perf_counter() - start) / (len(queries) * len(picked))
    return per_reference * len(ids) * 1000


def print_table(rows) -> None:
    print_aligned(("measure", "Cueledger", "baseline (brute force)", "target"), rows)


if __name__ == "__main__":
    main()
