"""The render pipeline on PostgreSQL and a real broker, with real worker processes."""

import io
import threading
from datetime import timedelta

import soundfile
from django.db import connection

from library.models import Artifact, Cue, ProcessingJob
from library.services import artifact_sweep_orphans, cue_ingest
from tests.factories import client_for, midi_sketch, user_in_role
from tests.integration.conftest import wait_until


def media_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".incoming-"))


def test_an_uploaded_cue_is_rendered_by_a_worker(start_worker, private_files):
    worker = start_worker()
    producer = user_in_role("producer")
    response = client_for(producer).post(
        "/api/v1/cues/", {"title": "Through the broker", "midi": _upload(midi_sketch(bars=4))}, format="multipart"
    )
    assert response.status_code == 201
    cue_id = response.json()["id"]

    def ready():
        return Cue.objects.filter(pk=cue_id, status=Cue.Status.READY).first()

    cue = wait_until(ready, timeout=60, what="the cue to be rendered", logs=[worker.log_path])
    assert cue.audio and cue.preview and cue.waveform
    audio = client_for(producer).get(f"/api/v1/cues/{cue_id}/audio/")
    assert audio["Content-Type"] == "audio/flac"
    assert soundfile.info(io.BytesIO(b"".join(audio.streaming_content))).format == "FLAC"


def test_a_worker_killed_mid_render_is_replaced_and_the_cue_ends_ready_with_one_set_of_artifacts(
    start_worker, private_files, settings
):
    """SIGKILL the worker (parent and pool) while it renders a ten-minute cue. The message was not acknowledged,
    so once the visibility timeout passes the broker hands it to a new worker, which renders again from scratch."""
    first = start_worker()
    producer = user_in_role("producer")
    cue = cue_ingest(created_by=producer, title="Ten minutes", midi=midi_sketch(bars=250, tempo_bpm=100, drums=True))
    job = cue.jobs.get(kind="render")

    def mid_render():
        job.refresh_from_db()
        return job.state == ProcessingJob.State.RUNNING and 0.05 <= job.progress < 0.5

    wait_until(mid_render, timeout=60, what="the render to be under way", logs=[first.log_path])
    first.kill()
    job.refresh_from_db()
    assert job.state == ProcessingJob.State.RUNNING and job.progress < 0.9
    assert Cue.objects.get(pk=cue.pk).status == Cue.Status.ANALYSING

    second = start_worker()

    def finished():
        job.refresh_from_db()
        return job.is_finished

    wait_until(finished, timeout=180, what="another worker to finish the job", logs=[first.log_path, second.log_path])
    cue.refresh_from_db()
    assert job.state == ProcessingJob.State.SUCCEEDED and job.attempts >= 2
    assert cue.status == Cue.Status.READY
    # One set: MIDI, signed FLAC, preview, peaks and two credential sidecars, once the first attempt's leftovers (if
    # it got as far as storing anything) are swept.
    artifact_sweep_orphans(older_than=timedelta(0))
    assert Artifact.objects.count() == 6
    assert {p.name for p in media_files(private_files)} == set(Artifact.objects.values_list("sha256", flat=True))
    # The similarity check that the render queued works on a copy of the FLAC in the scratch folder; once it is
    # done, nothing of either job is left there.
    wait_until(
        lambda: cue.jobs.filter(kind="similarity", state=ProcessingJob.State.SUCCEEDED).exists(),
        timeout=120,
        what="the similarity check after the render",
        logs=[second.log_path],
    )
    assert not any(settings.CUELEDGER_SCRATCH_DIR.iterdir())


def test_concurrent_uploads_get_distinct_consecutive_numbers(transactional_db, private_files):
    producer = user_in_role("producer")
    numbers: list[int] = []
    errors: list[BaseException] = []

    def upload_five(seed: int) -> None:
        try:
            for n in range(5):
                cue = cue_ingest(created_by=producer, title=f"{seed}-{n}", midi=midi_sketch(bars=2, seed=seed * 10 + n))
                numbers.append(cue.number)
        except BaseException as exc:  # reported below, so that a thread's failure fails the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=upload_five, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(numbers) == list(range(min(numbers), min(numbers) + 40))


def _upload(data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("cue.mid", data, content_type="audio/midi")
