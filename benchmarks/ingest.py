"""Ingest and render throughput on a batch of 1-3 minute cues.

Measures, on one core:
- analysis: cues read, validated and analysed per second (midi_read + midi_analyse), against a baseline of mido's
  bare parse of the same bytes, the floor any MIDI reader pays;
- ingest: cues per second through cue_ingest (validation, analysis, content-addressed storage, database rows);
- render: seconds of audio per second of work for FLAC + Ogg Vorbis + peaks, against a baseline of pretty_midi's
  own PrettyMIDI.fluidsynth() (synthesis alone, no encoding) on the same cues.

Usage: python benchmarks/ingest.py [--count 50] [--baseline-count 10] [--database-url URL]
Targets (issue 2): analysis >= 20 cues/s; render >= 30x real time on one core.
"""

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.table import print_aligned  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="cues in the batch (default 50)")
    parser.add_argument("--baseline-count", type=int, default=10, help="cues rendered by the baseline too")
    parser.add_argument("--database-url", help="database for the ingest run (default: a fresh SQLite file)")
    args = parser.parse_args()

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    scratch = Path(tempfile.mkdtemp(prefix="cueledger-bench-"))
    os.environ.update(CUELEDGER_VAR_DIR=str(scratch / "var"), DJANGO_SETTINGS_MODULE="cueledger.settings")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{scratch / 'bench.sqlite3'}"
    os.environ.pop("CELERY_BROKER_URL", None)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    batch = make_batch(args.count)
    total_audio = sum(seconds for _, seconds in batch)
    print(
        f"batch: {len(batch)} cues, {total_audio / 60:.1f} minutes of music, "
        f"{sum(len(d) for d, _ in batch) / 1e6:.2f} MB of MIDI; one core; database {connection_vendor()}\n"
    )

    rows = []
    rows.append(measure_analysis(batch))
    rows.append(measure_ingest(batch))
    rows.append(measure_render(batch, args.baseline_count, scratch))
    print_table(rows)


def make_batch(count: int) -> list[tuple[bytes, float]]:
    """Deterministic cues of 60-180 s, 4-8 parts, a third with drums."""
    from library.music.midi import midi_read
    from library.music.sketch import Sketch, sketch_midi

    batch = []
    for n in range(count):
        tempo = 70 + (n * 37) % 90
        seconds = 60 + (n * 53) % 121
        bars = max(1, round(seconds * tempo / 60 / 4))
        extra = tuple((40, 42, 60, 71)[: n % 5])
        data = sketch_midi(
            Sketch(
                tonic=("C", "D", "E", "F", "G", "A", "Bb")[n % 7],
                mode=("major", "minor")[n % 2],
                tempo_bpm=tempo,
                bars=bars,
                drums=n % 3 == 0,
                seed=n,
                extra_programs=extra,
            )
        )
        batch.append((data, midi_read(data, max_duration_seconds=1e9).get_end_time()))
    return batch


def measure_analysis(batch):
    import mido

    from library.music.midi import midi_analyse, midi_read

    def ours():
        for data, _ in batch:
            midi_analyse(midi_read(data, max_duration_seconds=1200))

    def baseline():
        for data, _ in batch:
            mido.MidiFile(file=io.BytesIO(data))

    ours_s, base_s = best_of(3, ours), best_of(3, baseline)
    return ("analysis (cues/s)", len(batch) / ours_s, "mido parse only", len(batch) / base_s, ">= 20")


def measure_ingest(batch):
    from django.contrib.auth import get_user_model

    from library.services import cue_ingest

    user, _ = get_user_model().objects.get_or_create(username="bench")
    start = time.perf_counter()
    for n, (data, _) in enumerate(batch):
        cue_ingest(created_by=user, title=f"Bench {n}", midi=data, moods=["bench"])
    elapsed = time.perf_counter() - start
    return ("ingest: validate, analyse, store, rows (cues/s)", len(batch) / elapsed, "-", None, "-")


def measure_render(batch, baseline_count: int, scratch: Path):
    from library.music.midi import midi_read
    from library.music.render import SOUNDFONT, audio_render

    rates, audio_seconds, busy = [], 0.0, 0.0
    for n, (data, _) in enumerate(batch):
        out = scratch / f"render-{n}"
        out.mkdir()
        score = midi_read(data, max_duration_seconds=1200)
        start = time.perf_counter()
        rendered = audio_render(score, out)
        elapsed = time.perf_counter() - start
        rates.append(rendered.seconds / elapsed)
        audio_seconds, busy = audio_seconds + rendered.seconds, busy + elapsed
        print(f"\r  rendered {n + 1}/{len(batch)}", end="", flush=True)
    print()

    base_audio, base_busy, ours_subset = 0.0, 0.0, 0.0
    for n, (data, _) in enumerate(batch[:baseline_count]):
        score = midi_read(data, max_duration_seconds=1200)
        start = time.perf_counter()
        samples = score.fluidsynth(fs=44_100, sf2_path=str(SOUNDFONT))
        base_busy += time.perf_counter() - start
        base_audio += len(samples) / 44_100
        ours_subset += rates[n]
        print(f"\r  baseline {n + 1}/{baseline_count}", end="", flush=True)
    print(
        f"\n  render speed per cue: median {statistics.median(rates):.1f}x, slowest {min(rates):.1f}x; "
        f"ours on the baseline's {baseline_count} cues: {ours_subset / max(1, baseline_count):.1f}x mean"
    )
    return (
        "render: FLAC + Vorbis + peaks (x real time)",
        audio_seconds / busy,
        "pretty_midi.fluidsynth(), synthesis only",
        base_audio / base_busy if base_busy else None,
        ">= 30",
    )


def best_of(repeats: int, run) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return min(timings)


def connection_vendor() -> str:
    from django.db import connection

    return connection.vendor


def print_table(rows) -> None:
    header = ("measure", "Cueledger", "baseline", "baseline value", "target")
    print_aligned(header, [(m, f"{o:.1f}", b, "-" if v is None else f"{v:.1f}", t) for m, o, b, v, t in rows])


if __name__ == "__main__":
    main()
