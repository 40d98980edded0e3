"""Generation: compose time, end-to-end time from a prompt to a checked, signed, listed cue, and memorisation.

1. Compose. A 2-minute orchestral prompt (strings, woodwinds, brass, percussion and piano) is parsed and composed by
   the shipped default model with ``--seeds`` seeds, in this process; p50/p95 of ``compose`` and of ``parse_prompt``.
   Baseline: ``library.music.sketch.sketch_midi`` writing a 2-minute sketch with as many parts (the catalog's simple
   demo writer), timed the same way.
2. End to end. A real Celery worker process (``--concurrency 1``) on PostgreSQL and Redis (``--embedded``: SQLite and
   the filesystem broker), a database made for the run and dropped after it, and a reference corpus of
   ``--references`` works: the default model's training works (symbolic fingerprints of their melodies, as the
   memorisation guard registers them) and synthetic works, each with the symbolic fingerprint of a random tune with
   a bass line and an acoustic fingerprint made from real FluidSynth renders (``filler_fingerprints`` of
   benchmarks/similarity_acoustic.py). One throwaway request first makes the worker build its corpus indexes (a
   one-off per corpus revision, reported apart). Then ``--requests`` prompts of a 2-minute cue, one at a time, from
   POST /api/v1/generations/ (Django's test client, in this process) until the cue is rendered, checked, has its
   generation and similarity records in the ledger, and GET /api/v1/cues/?status=ready lists it; each stage is the
   first poll (every 20 ms) that sees it. The same for a 30-second cue. Baseline: the same kind of MIDI, composed
   beforehand with other seeds, uploaded through POST /api/v1/cues/ and taken through the same pipeline.
3. Memorisation. ``--cues`` cues of the default model over varied specs (moods, keys, modes, 60-160 bpm, 4/4 3/4 6/8,
   30-120 s, ensembles, seeds), each checked by the symbolic detector against an index of the model's training works
   alone (``work_midi`` -> ``midi_read`` -> ``symbolic_fingerprint``). Rate: share of cues with a match at or above
   the threshold: ``DEFAULT_THRESHOLD``, and the threshold the product's calibration rule gives on that index (FPR
   <= 1e-3 per pair of training works). Baseline: the same specs composed by deliberately memorising models, each an
   order-2 model of one training work (10 works, every tenth cue each). For every cue the longest run of melody
   steps (interval, duration) copied from the work it matched best (its own work for the baseline) is reported too.
   Measured twice: the composer alone, and the cues a generation job hands over, composed through the composer's
   memorisation filter (``generation/composer/guard.py``) against the same training works, with the attempts it
   took.

Fingerprints of the training works and of the synthetic references are cached in var/bench-cache/generation/, keyed
by the engine version (and the model's, for the training works).

Usage: python benchmarks/generation.py [--seeds 30] [--requests 5] [--cues 200] [--references 10000]
       [--postgres postgres://postgres@127.0.0.1:5432/postgres] [--broker redis://127.0.0.1:6379/14] [--embedded]
       [--skip-end-to-end]
Targets: compose <= 0.5 s for a 2-minute 6-track cue; prompt -> checked, signed and listed cue <= 5 s at 10,000
references; memorisation rate 0 against the training works.
"""

import argparse
import io
import os
import pickle
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.table import print_aligned  # noqa: E402

CACHE = ROOT / "var" / "bench-cache" / "generation"
PROMPT_2_MINUTES = "heroic orchestral cue with piano, 2:00, 110 bpm, D major"
PROMPT_30_SECONDS = "tense orchestral underscore with piano, 0:30, 96 bpm, A minor"
MOODS = ("tense", "heroic", "sad", "calm", "action", "mysterious", "romantic", "playful", "hopeful", "neutral")
TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MELODIC_FAMILIES = ("strings", "brass", "woodwinds", "piano", "synth_pads")
MEMORISED_WORKS = 10
ACOUSTIC_BASES = 24
POLL_SECONDS = 0.02
STAGE_TIMEOUT = 300.0
DATABASE_NAME = "bench_generation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="seeds composed per figure 1 measure")
    parser.add_argument("--requests", type=int, default=5, help="timed requests per end-to-end measure")
    parser.add_argument("--cues", type=int, default=200, help="cues per memorisation measure")
    parser.add_argument("--references", type=int, default=10_000, help="reference works in the end-to-end corpus")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/postgres", help="server URL")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/14", help="broker URL (emptied by the run)")
    parser.add_argument("--embedded", action="store_true", help="SQLite and the filesystem broker instead")
    parser.add_argument("--skip-end-to-end", action="store_true", help="figures 1 and 3 only (no services)")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start\n")

    from generation.composer.training import DEFAULT_MODEL_DIR, model_load

    model, manifest = model_load(DEFAULT_MODEL_DIR)
    print(f"model {model.version[:12]}: order {model.order}, {len(manifest['works'])} training works\n")
    print_figure("1. Compose", measure_compose(model, args.seeds))
    training = training_works_cached(model, manifest)
    print_figure("3. Memorisation", measure_memorisation(model, training, args.cues))
    if not args.skip_end_to_end:
        print_figure("2. End to end", measure_end_to_end(args, model, training))


def print_figure(title: str, rows) -> None:
    print(f"\n{title}\n")
    print_aligned(("measure", "result", "baseline", "target"), rows)
    print()


def seconds_pair(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    return f"{statistics.median(values) * scale:.{digits}f} / {float(np.percentile(values, 95)) * scale:.{digits}f}"


# --- 1. Compose -------------------------------------------------------------------------------------------------


def measure_compose(model, seeds: int) -> list[tuple]:
    import pretty_midi

    from generation.composer.compose import compose
    from generation.composer.prompts import parse_prompt
    from library.music.midi import midi_read
    from library.music.sketch import Sketch, sketch_midi

    parse_times = []
    for _ in range(seeds):
        started = time.perf_counter()
        spec = parse_prompt(PROMPT_2_MINUTES).spec
        parse_times.append(time.perf_counter() - started)
    print(f"prompt: {PROMPT_2_MINUTES!r}\n  -> ensemble {', '.join(spec.ensemble)}, {spec.duration_seconds:g} s")
    short = parse_prompt(PROMPT_30_SECONDS).spec

    def timed(make, count):
        times, last = [], None
        for seed in range(count):
            started = time.perf_counter()
            last = make(seed)
            times.append(time.perf_counter() - started)
        return times, last

    compose(spec, seed=10_000, model=model)  # warm caches, as a worker's first cue does
    long_times, composition = timed(lambda seed: compose(spec, seed=seed, model=model), seeds)
    short_times, _ = timed(lambda seed: compose(short, seed=seed, model=model), seeds)
    tracks = len(composition.tracks)
    if tracks < 6:
        raise SystemExit(f"the orchestral prompt gave {tracks} tracks, fewer than 6")
    length = midi_read(composition.midi, max_duration_seconds=1e9).get_end_time()

    bars = round(120 * spec.tempo_bpm / 60 / 4)
    sketch = Sketch(tonic="D", tempo_bpm=spec.tempo_bpm, bars=bars, drums=True, extra_programs=(60, 71, 56, 47))
    sketch_midi(sketch)
    sketch_times, data = timed(lambda seed: sketch_midi(Sketch(**{**sketch.__dict__, "seed": seed})), seeds)
    sketch_score = pretty_midi.PrettyMIDI(io.BytesIO(data))
    print(
        f"  composed: {tracks} tracks ({', '.join(t.name for t in composition.tracks)}), {length:.1f} s; "
        f"sketch: {len(sketch_score.instruments)} tracks, {sketch_score.get_end_time():.1f} s"
    )
    return [
        ("parse the prompt, p50 / p95 (ms)", seconds_pair(parse_times, 1000, 2), "-", "-"),
        (
            f"compose a 2-minute cue of {tracks} tracks, p50 / p95 (s)",
            seconds_pair(long_times),
            f"{seconds_pair(sketch_times)} (sketch_midi, {len(sketch_score.instruments)} tracks)",
            "<= 0.5",
        ),
        ("compose a 30 s cue, p50 / p95 (s)", seconds_pair(short_times), "-", "-"),
    ]


# --- Training works ---------------------------------------------------------------------------------------------


def training_works_cached(model, manifest) -> list[dict]:
    """Per training work: its key, title, symbolic fingerprint (bytes, or None when it has no usable line), melody
    steps and MIDI. Parsing the corpus with music21 takes a while, so the result is cached per model version."""
    from library.fingerprints import ENGINE_VERSION

    path = CACHE / f"training-{model.version[:16]}-{ENGINE_VERSION.rsplit('/', 1)[-1]}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from generation.composer.training import TrainingWork, work_melody, work_midi
    from library.fingerprints import FingerprintError
    from library.fingerprints.symbolic import symbolic_fingerprint
    from library.music.midi import midi_read

    started, works = time.perf_counter(), []
    for entry in manifest["works"]:
        work = TrainingWork(**{field: entry[field] for field in TrainingWork.__dataclass_fields__})
        midi = work_midi(work)
        try:
            fingerprint = symbolic_fingerprint(midi_read(midi, max_duration_seconds=1e9)).to_bytes()
        except FingerprintError:
            fingerprint = None
        key = f"{work.corpus_path}#{work.number}"
        works.append({"key": key, "title": work.title, "fingerprint": fingerprint, "steps": work_melody(work)})
        works[-1]["midi"] = midi
    print(f"  training works parsed and fingerprinted in {time.perf_counter() - started:.0f} s (cached now)")
    path.write_bytes(pickle.dumps(works))
    return works


# --- 3. Memorisation --------------------------------------------------------------------------------------------


def memorisation_specs(count: int) -> list[tuple]:
    from generation.composer.spec import ENSEMBLE_FAMILIES, GenerationSpec

    rng = random.Random(2024)
    specs = []
    for _ in range(count):
        ensemble = rng.sample(ENSEMBLE_FAMILIES, k=rng.randint(2, 5))
        if not set(ensemble) & set(MELODIC_FAMILIES):
            ensemble.append(rng.choice(MELODIC_FAMILIES))
        spec = GenerationSpec(
            moods=tuple(rng.sample(MOODS, k=rng.choice((1, 1, 2)))),
            ensemble=tuple(ensemble),
            tempo_bpm=float(rng.randint(60, 160)),
            key=rng.choice(TONICS),
            mode=rng.choice(("major", "minor")),
            meter=rng.choice(((4, 4), (3, 4), (6, 8))),
            duration_seconds=float(rng.randint(30, 120)),
        )
        specs.append((spec, rng.randrange(2**32)))
    return specs


def measure_memorisation(model, training: list[dict], count: int) -> list[tuple]:
    from generation.composer.model import MelodyModel
    from library.fingerprints.calibration import threshold_for_fpr
    from library.fingerprints.symbolic import DEFAULT_THRESHOLD, SymbolicFingerprint, SymbolicIndex

    index = SymbolicIndex()
    for number, work in enumerate(training):
        if work["fingerprint"] is not None:
            index.add(number, SymbolicFingerprint.from_bytes(work["fingerprint"]))
    index.freeze()
    print(f"training index: {len(index)} of {len(training)} works have a melody line of 8 notes or more")

    # The product's calibration rule (similarity_calibrate) applied to this index: every work against the others.
    # Pairs whose match covers half of both works are one tune twice (the books share tunes); it sets them aside.
    unrelated, same_tune = [], 0
    for number in index.reference_ids():
        query = index.fingerprint(number)
        for match in index.query(query, limit=50, exclude=number):
            larger = max(query.note_count, index.fingerprint(match.reference_id).note_count)
            if match.matched_notes >= 0.5 * larger:
                same_tune += 1
            else:
                unrelated.append(match.score)
    pairs = len(index) * (len(index) - 1) - same_tune
    calibrated = threshold_for_fpr(unrelated, pairs=pairs, target_fpr=1e-3, fallback=DEFAULT_THRESHOLD).threshold

    specs = memorisation_specs(count)
    ours = check_cues(specs, lambda n: model, index, training, own_work=None)
    # What a generation job hands over: the same cues through the composer's memorisation filter.
    handed_over = check_cues(specs, lambda n: model, index, training, own_work=None, filtered=True)
    # Deliberately memorising: an order-2 model of one long training work reproduces runs of it.
    by_length = sorted(
        (n for n, work in enumerate(training) if work["fingerprint"] and len(work["steps"]) >= 48),
        key=lambda n: training[n]["key"],
    )
    chosen = by_length[:: max(1, len(by_length) // MEMORISED_WORKS)][:MEMORISED_WORKS]
    memorising = {
        n: MelodyModel.from_sequences([training[n]["steps"]], training_digest="memorising", order=2) for n in chosen
    }
    print(f"memorising models: order 2 over one work each: {', '.join(training[n]['title'] for n in chosen)}")
    baseline = check_cues(
        specs,
        lambda n: memorising[chosen[n % len(chosen)]],
        index,
        training,
        own_work=lambda n: chosen[n % len(chosen)],
    )

    def rate(results, threshold):
        return sum(1 for r in results if r["best"] >= threshold) / len(results)

    def own_rate(results, threshold):
        return sum(1 for r in results if r["own"] >= threshold) / len(results)

    def spread(results, key):
        values = [r[key] for r in results]
        return f"{np.percentile(values, 50):.1f} / {np.percentile(values, 95):.1f} / {max(values):.1f}"

    def by_run(results, low, high):
        group = [r for r in results if low <= r["copied"] < high]
        caught = sum(1 for r in group if r["own"] >= DEFAULT_THRESHOLD)
        return f"{caught}/{len(group)}"

    flagged = [r for r in ours if r["best"] >= DEFAULT_THRESHOLD]
    in_melody = sum(1 for r in flagged if r["line"] == "melody")
    in_tempo = sum(1 for r in flagged if 0.5 <= r["tempo_ratio"] <= 2)
    for result in sorted(flagged, key=lambda r: -r["best"]):
        print(
            f"  default-model cue {result['number']} flagged: {result['best']:.1f} against "
            f"{training[result['work']]['title']!r}, {result['matched_notes']} notes matched in its "
            f"{result['line']} line, tempo ratio {result['tempo_ratio']:.2f}, longest melody run copied "
            f"{result['copied']} steps"
        )
    from generation.composer.guard import FILTER_THRESHOLD

    attempts = [r["attempts"] for r in handed_over]
    return [
        (
            f"cues handed over (memorisation filter at {FILTER_THRESHOLD:g}): rate at {DEFAULT_THRESHOLD:g} / at "
            f"{calibrated:.2f}",
            f"{rate(handed_over, DEFAULT_THRESHOLD):.3f} / {rate(handed_over, calibrated):.3f}",
            "-",
            "0",
        ),
        (
            "  attempts per cue: mean / max; cues composed again",
            f"{sum(attempts) / len(attempts):.2f} / {max(attempts)}; {sum(1 for a in attempts if a > 1)}",
            "-",
            "-",
        ),
        ("  best score per cue handed over, p50 / p95 / max", spread(handed_over, "best"), "-", "-"),
        (
            f"composer alone (no filter): rate at DEFAULT_THRESHOLD {DEFAULT_THRESHOLD:g}",
            f"{rate(ours, DEFAULT_THRESHOLD):.3f} ({len(flagged)}/{len(ours)})",
            f"{rate(baseline, DEFAULT_THRESHOLD):.3f} (own work: {own_rate(baseline, DEFAULT_THRESHOLD):.3f})",
            "0 (baseline high)",
        ),
        (
            f"composer alone: rate at the threshold calibrated on the training works ({calibrated:.2f})",
            f"{rate(ours, calibrated):.3f}",
            f"{rate(baseline, calibrated):.3f} (own work: {own_rate(baseline, calibrated):.3f})",
            "0",
        ),
        ("composer alone: best score per cue, p50 / p95 / max", spread(ours, "best"), spread(baseline, "best"), "-"),
        ("longest melody run copied (steps), p50 / p95 / max", spread(ours, "copied"), spread(baseline, "copied"), "-"),
        (
            f"flagged at {DEFAULT_THRESHOLD:g}: in the melody / in another part; tempo ratio 0.5-2",
            f"{in_melody} / {len(flagged) - in_melody}; {in_tempo}",
            f"{sum(1 for r in baseline if r['best'] >= DEFAULT_THRESHOLD and r['line'] == 'melody')} / "
            f"{sum(1 for r in baseline if r['best'] >= DEFAULT_THRESHOLD and r['line'] != 'melody')}",
            "-",
        ),
        (
            "baseline flagged by longest run copied: < 8 / 8-11 / >= 12 steps",
            "-",
            " / ".join(by_run(baseline, low, high) for low, high in ((0, 8), (8, 12), (12, 10**6))),
            "-",
        ),
        (
            f"training-work pairs at or above {DEFAULT_THRESHOLD:g} (of {pairs:,}; {same_tune} same-tune set aside)",
            sum(1 for s in unrelated if s >= DEFAULT_THRESHOLD),
            "-",
            "-",
        ),
    ]


def check_cues(specs, model_for, index, training, *, own_work, filtered: bool = False) -> list[dict]:
    """Compose each spec (with ``filtered``, through the composer's memorisation filter against ``index``, as a
    generation job does), fingerprint the MIDI as a check does, and query the training index."""
    from generation.composer.compose import compose
    from generation.composer.guard import compose_unlike
    from library.fingerprints import FingerprintError
    from library.fingerprints.symbolic import symbolic_fingerprint
    from library.music.midi import midi_read

    results = []
    for number, (spec, seed) in enumerate(specs):
        attempts = 1
        if filtered:
            guarded = compose_unlike(spec, seed=seed, model=model_for(number), training=index)
            composition, attempts = guarded.composition, guarded.attempts
        else:
            composition = compose(spec, seed=seed, model=model_for(number))
        score = midi_read(composition.midi, max_duration_seconds=1e9)
        try:
            matches = index.query(symbolic_fingerprint(score), limit=10)
        except FingerprintError:
            matches = []
        best = matches[0] if matches else None
        work = own_work(number) if own_work else (best.reference_id if best else None)
        own = max((m.score for m in matches if m.reference_id == work), default=0.0)
        melody = melody_steps(score, composition)
        results.append(
            {
                "number": number,
                "best": best.score if best else 0.0,
                "own": own,
                "work": best.reference_id if best else None,
                "matched_notes": best.matched_notes if best else 0,
                "tempo_ratio": best.tempo_ratio if best else 0.0,
                "line": line_of(score, best) if best else "-",
                "copied": longest_copied_run(melody, training[work]["steps"]) if work is not None else 0,
                "attempts": attempts,
            }
        )
        if (number + 1) % 25 == 0 or number + 1 == len(specs):
            print(f"\r  checked {number + 1}/{len(specs)}", end="", flush=True)
    print()
    return results


def line_of(score, match) -> str:
    """The name of the cue's part whose notes the match aligned (its first matched note's onset and pitch)."""
    onset, _, pitch = match.cue_notes[0]
    for instrument in score.instruments:
        if any(abs(note.start - onset) < 1e-3 and note.pitch == pitch for note in instrument.notes):
            return instrument.name or f"program {instrument.program}"
    return "?"


def melody_steps(score, composition) -> list[tuple[int, float]]:
    """The cue's melody part as the model's steps: (interval, quarter notes to the next onset)."""
    from generation.composer.model import step_of

    names = {track.name for track in composition.tracks if track.role == "melody"}
    notes = sorted(
        (note for instrument in score.instruments if instrument.name in names for note in instrument.notes),
        key=lambda note: note.start,
    )
    quarters = [score.time_to_tick(note.start) / score.resolution for note in notes]
    steps = []
    for i in range(1, len(notes)):
        length = quarters[i + 1] - quarters[i] if i + 1 < len(notes) else notes[i].end - notes[i].start
        if length > 0:
            steps.append(step_of(notes[i].pitch - notes[i - 1].pitch, length))
    return steps


def longest_copied_run(cue: list[tuple[int, float]], work: list[tuple[int, float]]) -> int:
    """The longest run of consecutive steps the cue's melody shares with the work's (same intervals and lengths)."""
    from generation.composer.model import step_of

    if not cue or not work:
        return 0
    vocabulary: dict = {}
    a = np.array([vocabulary.setdefault(s, len(vocabulary)) for s in cue])
    b = np.array([vocabulary.setdefault(step_of(*s), len(vocabulary)) for s in work])
    run, best = np.zeros(len(b) + 1, dtype=np.int32), 0
    for symbol in a:
        run[1:] = np.where(b == symbol, run[:-1] + 1, 0)
        best = max(best, int(run.max()))
    return best


# --- 2. End to end: the corpus ----------------------------------------------------------------------------------


def reference_tune(number: int):
    """A random 16-48 bar tune in 4/4 with a walking bass line, unrelated to every other number."""
    import pretty_midi

    rng = random.Random(f"generation-reference-{number}")
    tempo = rng.uniform(70, 150)
    beat, bars = 60.0 / tempo, rng.randint(16, 48)
    score = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    score.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    melody = pretty_midi.Instrument(program=rng.choice((0, 40, 56, 65, 73)), name="Melody")
    bass = pretty_midi.Instrument(program=32, name="Bass")
    rhythms = ((1.0,), (0.5, 0.5), (1.5, 0.5), (0.5, 0.25, 0.25), (2.0,), (0.75, 0.25))
    pitch, at = 60 + rng.randrange(-5, 6), 0.0
    while at < bars * 4:
        for length in rng.choice(rhythms):
            pitch = min(84, max(52, pitch + rng.choice((-7, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 7))))
            melody.notes.append(pretty_midi.Note(90, pitch, at * beat, (at + length * 0.95) * beat))
            at += length
    root = 36 + rng.randrange(12)
    for bar in range(bars):
        chord_root = root + rng.choice((0, 5, 7, 9, 2, 4))
        for step, offset in enumerate((0, 7, 12, 7)):
            start = (bar * 4 + step) * beat
            bass.notes.append(pretty_midi.Note(70, chord_root + offset, start, start + 0.9 * beat))
    score.instruments.extend((melody, bass))
    return score


def symbolic_reference(number: int) -> bytes:
    from library.fingerprints.symbolic import symbolic_fingerprint

    return symbolic_fingerprint(reference_tune(number)).to_bytes()


def synthetic_references(count: int) -> tuple[list[bytes], list[bytes]]:
    """Symbolic and acoustic fingerprints of ``count`` synthetic works, made once and cached."""
    import multiprocessing

    from library.fingerprints import ENGINE_VERSION

    path = CACHE / f"references-{count}-{ENGINE_VERSION.rsplit('/', 1)[-1]}.pickle"
    if path.exists():
        return pickle.loads(path.read_bytes())
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(os.cpu_count() or 1) as pool:
        symbolic = pool.map(symbolic_reference, range(count), chunksize=200)
        bases = pool.map(acoustic_base, range(ACOUSTIC_BASES))
    from benchmarks.similarity_acoustic import filler_fingerprints
    from library.fingerprints.acoustic import AcousticFingerprint

    real = [AcousticFingerprint.from_bytes(data) for data in bases]
    acoustic = [fp.to_bytes() for fp in filler_fingerprints(real, count)]
    print(f"  synthetic references made in {time.perf_counter() - started:.0f} s (cached now)")
    path.write_bytes(pickle.dumps((symbolic, acoustic)))
    return symbolic, acoustic


def acoustic_base(number: int) -> bytes:
    """A real acoustic fingerprint: a 20-30 s sketch rendered as cues are, fingerprinted in memory."""
    from benchmarks.similarity_acoustic import fingerprint_audio, piece, score_of, synthesise

    return fingerprint_audio(synthesise(score_of(piece("generation", number).midi))).to_bytes()


def corpus_seed(count: int, training: list[dict], owner, generator) -> float:
    """Insert ``count`` reference works in bulk (the training works first, linked to ``generator`` as its memorisation
    guard links them, so that its composer's filter compares with them) and bump the corpus once."""
    import hashlib

    from django.db import transaction

    from generation.models import TrainingReference
    from library.fingerprints import ENGINE_VERSION
    from library.models import ReferenceWork
    from library.services import MIDI, artifact_put
    from library.services.references import corpus_bump

    melodies = [work for work in training if work["fingerprint"] is not None]
    symbolic, acoustic = synthetic_references(count - len(melodies))
    started = time.perf_counter()

    def digest(*parts):
        total = hashlib.sha256()
        for part in parts:
            total.update(hashlib.sha256(part or b"").digest())
        return total.hexdigest()

    shared = artifact_put(content=training[0]["midi"], media_type=MIDI)[0]
    rows = [
        ReferenceWork(
            title=work["title"] or work["key"],
            source=f"training work {work['key']} (benchmark)",
            midi=shared,
            symbolic_fingerprint=work["fingerprint"],
            fingerprint_digest=digest(None, work["fingerprint"]),
            engine_version=ENGINE_VERSION,
            fingerprint_notes={"acoustic": {"code": "not_rendered", "detail": "Melody comparison only."}},
            created_by=owner,
        )
        for work in melodies
    ]
    rows += [
        ReferenceWork(
            title=f"Synthetic reference {n}",
            source="benchmark",
            midi=shared,
            symbolic_fingerprint=sym,
            acoustic_fingerprint=aco,
            fingerprint_digest=digest(aco, sym),
            engine_version=ENGINE_VERSION,
            created_by=owner,
        )
        for n, (sym, aco) in enumerate(zip(symbolic, acoustic, strict=True))
    ]
    with transaction.atomic():
        ReferenceWork.objects.bulk_create(rows, batch_size=500)
        TrainingReference.objects.bulk_create(
            TrainingReference(generator=generator, work_key=work["key"], reference=row)
            for work, row in zip(melodies, rows, strict=False)
        )
        corpus_bump()
    return time.perf_counter() - started


# --- 2. End to end: services and the worker ---------------------------------------------------------------------


class Worker:
    """``celery -A cueledger worker`` in its own process group, logging to a file."""

    def __init__(self, env: dict, log: Path, concurrency: int = 1) -> None:
        self.log_path = log
        self.log = log.open("w")
        command = [sys.executable, "-m", "celery", "-A", "cueledger", "worker", "--loglevel", "INFO"]
        command += ["--concurrency", str(concurrency), "--without-mingle", "--without-gossip", "-n", "bench@%h"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 120
        while "ready." not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)

    def index_builds(self) -> dict[str, float]:
        found = re.findall(r"built the (\w+) index of (\d+) works in ([\d.]+) s", self.log_path.read_text())
        return {detector: float(seconds) for detector, _, seconds in found}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.log.close()


def services_prepare(args, scratch: Path) -> dict:
    """The environment of this process and the worker: a fresh database, an empty broker, private folders."""
    var = scratch / "var"
    env = {
        "DJANGO_SETTINGS_MODULE": "cueledger.settings",
        "CUELEDGER_VAR_DIR": str(var),
        "MEDIA_ROOT": str(scratch / "media"),
        "CUELEDGER_SCRATCH_DIR": str(scratch / "scratch"),
        "CUELEDGER_INDEX_DIR": str(scratch / "indexes"),
        "CUELEDGER_KEY_DIR": str(scratch / "keys"),
        "CUELEDGER_KEY_PASSPHRASE": "benchmark passphrase, not a secret",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "PYTHONUNBUFFERED": "1",
    }
    (var / "static").mkdir(parents=True)  # whitenoise warns about a missing static folder otherwise
    if args.embedded:
        env["DATABASE_URL"] = f"sqlite:///{var / 'bench.sqlite3'}"
        env["CELERY_BROKER_URL"] = "filesystem://localhost/"
        return env
    import psycopg
    from kombu import Connection

    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE_NAME}")
    env["DATABASE_URL"] = args.postgres.rsplit("/", 1)[0] + f"/{DATABASE_NAME}"
    env["CELERY_BROKER_URL"] = args.broker
    with Connection(args.broker, connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=2)
        if conn.transport.driver_type == "redis":
            conn.default_channel.client.flushdb()
    return env


def services_release(args) -> None:
    from django.db import connections

    connections.close_all()
    if args.embedded:
        return
    import psycopg

    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE_NAME} WITH (FORCE)")


# --- 2. End to end: the requests --------------------------------------------------------------------------------


def wait_for(predicate, what: str, worker: Worker):
    deadline = time.perf_counter() + STAGE_TIMEOUT
    while True:
        result = predicate()
        if result:
            return result, time.perf_counter()
        if time.perf_counter() > deadline:
            raise SystemExit(f"timed out waiting for {what}\n{worker.log_path.read_text()[-3000:]}")
        time.sleep(POLL_SECONDS)


def follow(client, cue_id, started: float, record_kind: str, worker: Worker) -> dict:
    """Poll one cue through the pipeline; each stage in seconds from ``started``."""
    from library.models import Cue, SimilarityReport
    from provenance.models import LedgerEntry

    stages = {}
    _, at = wait_for(lambda: Cue.objects.filter(pk=cue_id, status=Cue.Status.READY).exists(), "rendering", worker)
    stages["rendered"] = at - started
    report, at = wait_for(lambda: SimilarityReport.objects.filter(cue_id=cue_id).first(), "the check", worker)
    stages["checked"], stages["verdict"] = at - started, report.verdict
    for match in report.matches:
        reference = match["reference"]["title"]
        print(f"    flagged by the {match['detector']} detector: {match['score']:.1f} against {reference!r}")

    def in_ledger():
        kinds = set(LedgerEntry.objects.filter(reference=f"cue:{cue_id}").values_list("kind", flat=True))
        return {record_kind, "similarity"} <= kinds

    _, at = wait_for(in_ledger, "the ledger records", worker)
    stages["ledger"] = at - started

    def listed():
        response = client.get("/api/v1/cues/?status=ready")
        return any(cue["id"] == str(cue_id) for cue in response.json()["results"])

    _, at = wait_for(listed, "the listing", worker)
    stages["listed"] = at - started
    stages.update(worker_side(cue_id))
    return stages


def worker_side(cue_id) -> dict:
    """Where the worker spent the time, from the jobs' own timestamps (seconds)."""
    from generation.models import GenerationResult
    from library.models import ProcessingJob, SimilarityReport

    parts = {}
    result = GenerationResult.objects.filter(cue_id=cue_id).select_related("job").first()
    if result is not None:
        job = result.job
        parts["w:generation queued"] = (job.started_at - job.created_at).total_seconds()
        parts["w:compose + ingest"] = (job.finished_at - job.started_at).total_seconds()
    for kind in (ProcessingJob.Kind.RENDER, ProcessingJob.Kind.SIMILARITY):
        job = ProcessingJob.objects.filter(cue_id=cue_id, kind=kind).order_by("created_at").first()
        parts[f"w:{kind} queued"] = (job.started_at - job.created_at).total_seconds()
        parts[f"w:{kind} ran"] = (job.finished_at - job.started_at).total_seconds()
    report = SimilarityReport.objects.filter(cue_id=cue_id).first()
    parts["w:check (report duration)"] = report.duration_ms / 1000
    return parts


def generate(client, prompt: str, seed: int, worker: Worker) -> dict:
    from generation.models import GenerationResult

    started = time.perf_counter()
    response = client.post("/api/v1/generations/", {"prompt": prompt, "seed": str(seed)}, format="json")
    if response.status_code != 202:
        raise SystemExit(f"POST /api/v1/generations/ gave {response.status_code}: {response.content[:500]}")
    accepted = time.perf_counter() - started
    job_id = response.json()["id"]

    def cue_made():
        return GenerationResult.objects.filter(job_id=job_id).values_list("cue_id", flat=True).first()

    cue_id, at = wait_for(cue_made, "the generated cue", worker)
    stages = {"accepted": accepted, "created": at - started}
    return stages | follow(client, cue_id, started, "generation", worker)


def upload(client, midi: bytes, title: str, worker: Worker) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    started = time.perf_counter()
    response = client.post(
        "/api/v1/cues/", {"title": title, "midi": SimpleUploadedFile(f"{title}.mid", midi)}, format="multipart"
    )
    if response.status_code != 201:
        raise SystemExit(f"POST /api/v1/cues/ gave {response.status_code}: {response.content[:500]}")
    created = time.perf_counter() - started
    stages = {"accepted": created, "created": created}
    return stages | follow(client, response.json()["id"], started, "ingest", worker)


def measure_end_to_end(args, model, training: list[dict]) -> list[tuple]:
    from generation.composer.compose import compose
    from generation.composer.prompts import parse_prompt

    # The baseline uploads MIDI of the same kind and length, composed here before the clock starts.
    uploads = {
        prompt: [compose(parse_prompt(prompt).spec, seed=900 + n, model=model).midi for n in range(args.requests)]
        for prompt in (PROMPT_2_MINUTES, PROMPT_30_SECONDS)
    }
    print("end to end: preparing the corpus fingerprints")
    synthetic_references(args.references - sum(1 for w in training if w["fingerprint"] is not None))

    scratch = Path(tempfile.mkdtemp(prefix="cueledger-bench-generation-"))
    env = services_prepare(args, scratch)
    os.environ.update(env)
    import django

    django.setup()
    workers: list[Worker] = []
    try:
        return run_end_to_end(args, training, uploads, scratch, env, workers)
    finally:
        for worker in workers:
            worker.stop()
        services_release(args)
        shutil.rmtree(scratch, ignore_errors=True)


def run_end_to_end(args, training, uploads, scratch: Path, env: dict, workers: list) -> list[tuple]:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone
    from rest_framework.test import APIClient

    from cueledger.roles import user_create
    from generation.models import Generator
    from generation.services import generator_install, system_user
    from library.services.similarity import thresholds_current
    from provenance.content_credentials import dev_ca_create

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    from django.conf import settings

    dev_ca_create(Path(settings.CUELEDGER_C2PA_DIR))
    generator = generator_install()
    # The training works go into the corpus below with the rest, so the first job does not register them again.
    Generator.objects.filter(pk=generator.pk).update(references_registered_at=timezone.now())
    seeding = corpus_seed(args.references, training, system_user(), generator)
    producer, token = user_create(username="bench-producer", role="producer")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    thresholds = thresholds_current()
    print(
        f"  {connection.vendor} + {env['CELERY_BROKER_URL'].split(':')[0]}; migrated and seeded in "
        f"{time.perf_counter() - started:.0f} s (bulk insert of {args.references:,} works {seeding:.1f} s); "
        f"thresholds in force: symbolic {thresholds['symbolic']['value']:g}, acoustic "
        f"{thresholds['acoustic']['value']:g} (calibration: {thresholds['symbolic']['calibration_id']})"
    )

    worker = Worker(dict(os.environ, **env), scratch / "worker.log")
    workers.append(worker)
    cold = generate(client, PROMPT_30_SECONDS, 1, worker)
    builds = worker.index_builds()
    print(f"  warm-up request (index build included): {cold['listed']:.2f} s; index builds {builds}")

    measured = {}
    for label, prompt in (("2 min", PROMPT_2_MINUTES), ("30 s", PROMPT_30_SECONDS)):
        for kind in ("generated", "uploaded"):
            measured[(label, kind)] = []
        for n in range(args.requests):
            measured[(label, "generated")].append(generate(client, prompt, 100 + n, worker))
            title = f"Upload {label} {n}"
            measured[(label, "uploaded")].append(upload(client, uploads[prompt][n], title, worker))
            done = measured[(label, "generated")][-1]["listed"], measured[(label, "uploaded")][-1]["listed"]
            print(f"  {label} #{n + 1}: generated {done[0]:.2f} s, uploaded {done[1]:.2f} s")
    return end_to_end_rows(measured, builds, cold, args.references)


def end_to_end_rows(measured: dict, builds: dict, cold: dict, references: int) -> list[tuple]:
    def median(label, kind, stage):
        return statistics.median(run[stage] for run in measured[(label, kind)])

    def each(label, kind):
        return ", ".join(f"{run['listed']:.2f}" for run in measured[(label, kind)])

    rows = [
        (
            f"index build at {references:,} references, symbolic / acoustic (s, one-off)",
            f"{builds.get('symbolic', float('nan')):.1f} / {builds.get('acoustic', float('nan')):.1f}",
            "-",
            "-",
        ),
        ("warm-up request, 30 s cue, index build included (s)", f"{cold['listed']:.2f}", "-", "-"),
    ]
    for label in ("2 min", "30 s"):
        rows.append(
            (
                f"{label}: request -> checked, signed, listed, median (s)",
                f"{median(label, 'generated', 'listed'):.2f}",
                f"{median(label, 'uploaded', 'listed'):.2f} (POST /api/v1/cues/)",
                "<= 5" if label == "2 min" else "-",
            )
        )
        rows.append((f"{label}: each request (s)", each(label, "generated"), each(label, "uploaded"), "-"))
    for label in ("2 min", "30 s"):
        flags = [
            f"{sum(1 for run in measured[(label, kind)] if run['verdict'] == 'flag')}/{len(measured[(label, kind)])}"
            for kind in ("generated", "uploaded")
        ]
        rows.append((f"{label}: cues the check flagged", flags[0], flags[1], "-"))
    stages = ("accepted", "created", "rendered", "checked", "ledger", "listed")
    names = {"ledger": "records in ledger", "created": "cue created"}
    for stage in stages:
        rows.append(
            (
                f"2 min: request -> {names.get(stage, stage)}, median (s)",
                f"{median('2 min', 'generated', stage):.2f}",
                f"{median('2 min', 'uploaded', stage):.2f}",
                "-",
            )
        )
    worker_parts = [key for key in measured[("2 min", "generated")][0] if key.startswith("w:")]
    for part in worker_parts:
        uploaded = [run[part] for run in measured[("2 min", "uploaded")] if part in run]
        rows.append(
            (
                f"2 min, worker: {part[2:]}, median (s)",
                f"{median('2 min', 'generated', part):.2f}",
                f"{statistics.median(uploaded):.2f}" if uploaded else "-",
                "-",
            )
        )
    return rows


if __name__ == "__main__":
    main()
