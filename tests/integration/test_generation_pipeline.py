"""Generation end to end on PostgreSQL, a real broker and a real worker: the issue's walk-through.

A producer posts the prompt, gets three variations within seconds, downloads one whose audio hits 00:01:05:12 on a
downbeat, sees the model card with the training works and their licences, and finds the signed generation record in
the cue's provenance, which verifies offline.
"""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile

from generation.models import Generator
from generation.services import generator_install
from library.models import Cue
from tests.factories import client_for, user_in_role
from tests.generation.conftest import ISSUE_PROMPT
from tests.integration.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
HIT_SECONDS = 65.5  # 00:01:05:12 at 24 fps: 65 s and 12 of 24 frames


def attack_near(audio: np.ndarray, rate: int, seconds: float) -> float:
    """When, within half a second of ``seconds``, the strongest new sound enters: the peak of the spectral flux (the
    rise of log magnitude summed over frequencies) between 1024-sample frames 128 samples apart, timed at the end of
    the frame it first appears in. Loudness alone would not do: strings and brass take 30-140 ms to speak, and the
    swell into a hit rises too."""
    mono = audio.astype(np.float64).mean(axis=1)
    size, hop = 1024, 128
    start, stop = int((seconds - 0.5) * rate), int((seconds + 0.5) * rate)
    frames = np.lib.stride_tricks.sliding_window_view(mono[start - size : stop], size)[::hop] * np.hanning(size)
    magnitude = np.log1p(np.abs(np.fft.rfft(frames, axis=1)))
    flux = np.maximum(np.diff(magnitude, axis=0), 0).sum(axis=1)
    return (start + (int(np.argmax(flux)) + 1) * hop) / rate


def test_a_prompt_becomes_three_checked_signed_variations_that_hit_the_timecode(start_worker, tmp_path):
    worker = start_worker()
    producer, legal = user_in_role("producer"), user_in_role("legal")
    generator = generator_install()
    # The memorisation guard over every training work is exercised in the unit tests; here the first job registers
    # a handful, so the walk-through stays quick.
    Generator.objects.filter(pk=generator.pk).update(
        manifest=dict(generator.manifest, works=generator.manifest["works"][:5])
    )
    client = client_for(producer)

    response = client.post("/api/v1/generations/", {"prompt": ISSUE_PROMPT, "variations": 3}, format="json")
    assert response.status_code == 202, response.json()
    job_url = response.json()["url"]

    def finished():
        body = client.get(job_url).json()
        return body if body["status"] in ("succeeded", "failed") else None

    job = wait_until(finished, timeout=120, what="the generation job", logs=[worker.log_path])
    assert job["status"] == "succeeded", job["error"]
    assert len(job["cue_ids"]) == 3 and job["progress"] == 1.0

    def all_ready():
        cues = Cue.objects.filter(pk__in=job["cue_ids"])
        done = [cue for cue in cues if cue.status == Cue.Status.READY and cue.similarity_reports.exists()]
        return len(done) == 3

    wait_until(all_ready, timeout=240, what="three rendered and checked cues", logs=[worker.log_path])

    cue_id = job["cue_ids"][0]
    midi = pretty_midi.PrettyMIDI(io.BytesIO(client.get(f"/api/v1/cues/{cue_id}/midi/").getvalue()))
    assert min(abs(downbeat - HIT_SECONDS) for downbeat in midi.get_downbeats()) <= 0.001
    audio, rate = soundfile.read(io.BytesIO(client.get(f"/api/v1/cues/{cue_id}/audio/").getvalue()), dtype="int16")
    assert abs(attack_near(audio, rate, HIT_SECONDS) - HIT_SECONDS) <= 0.02
    assert len(audio) / rate >= 90.0

    card = client.get("/api/v1/generators/").json()["results"][0]
    assert card["version"] == generator.version and card["works"] and card["collections"]
    assert card["memorisation_guard"]["training_works_registered"] == 5

    provenance = client.get(f"/api/v1/cues/{cue_id}/provenance/").json()
    kinds = [record["kind"] for record in provenance["records"]]
    assert kinds[0] == "generation" and "similarity" in kinds
    generation = provenance["records"][0]
    assert generation["predicate"]["generator"]["version"] == generator.version

    (tmp_path / "bundle.json").write_bytes(client.get(f"/api/v1/cues/{cue_id}/evidence-bundle/").getvalue())
    (tmp_path / "keys.json").write_text(json.dumps(client_for(legal).get("/api/v1/provenance/keys/").json()))
    verified = subprocess.run(
        [sys.executable, "-m", "provenance.verify", tmp_path / "bundle.json", "--trusted-keys", tmp_path / "keys.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
