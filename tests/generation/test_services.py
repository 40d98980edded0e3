"""Generation jobs in the worker: the memorisation guard, resuming after a crash, failures that say why, and the
confidentiality of prompts."""

import pytest

from generation import services
from generation.composer.compose import CODE_VERSION
from generation.composer.guard import FILTER_THRESHOLD
from generation.models import GenerationJob, Generator, TrainingReference
from generation.services import generation_request, generation_run, training_references_register
from library.models import Cue, ProcessingJob, ReferenceWork
from library.services import cue_ingest, cue_render
from library.services.similarity import cue_similarity_check
from provenance.models import OutboxRecord, PromptSecret
from tests.generation.conftest import ISSUE_PROMPT

pytestmark = pytest.mark.django_db


def first_works(generator: Generator, count: int) -> Generator:
    """The generator with only its first ``count`` training works listed, so that a test registers a few works
    instead of parsing the whole training corpus; what registration does per work is the same."""
    manifest = dict(generator.manifest, works=generator.manifest["works"][:count])
    Generator.objects.filter(pk=generator.pk).update(manifest=manifest, references_registered_at=None)
    generator.refresh_from_db()
    return generator


def test_training_works_become_reference_works_once(generator):
    generator = first_works(generator, 3)
    progress = []

    added = training_references_register(generator=generator, progress=lambda done, total: progress.append(done))

    assert added == 3 and progress == [1, 2, 3]
    works = ReferenceWork.objects.order_by("id")
    assert works.count() == 3
    for work, entry in zip(works, generator.manifest["works"], strict=True):
        assert work.symbolic_fingerprint is not None and work.acoustic_fingerprint is None
        assert work.fingerprint_notes["acoustic"]["code"] == "not_rendered"
        assert entry["corpus_path"] in work.source and entry["license"] in work.notes
    assert training_references_register(generator=generator) == 0
    assert ReferenceWork.objects.count() == 3
    generator.refresh_from_db()
    assert generator.references_registered_at is not None


def test_a_cue_that_copies_a_training_work_is_flagged(generator, producer):
    generator = first_works(generator, 3)
    training_references_register(generator=generator)
    copied = TrainingReference.objects.select_related("reference__midi").first().reference
    from library.services import artifact_open

    with artifact_open(copied.midi) as handle:
        cue = cue_ingest(created_by=producer, title="Copy", midi=handle.read())
    cue_render(job_id=cue.jobs.get(kind="render").pk)

    cue_similarity_check(job_id=cue.jobs.get(kind="similarity", state=ProcessingJob.State.QUEUED).pk)

    report = cue.similarity_reports.get()
    assert report.verdict == "flag"
    assert copied.pk in {m["reference"]["id"] for m in report.matches}


def test_the_first_job_of_a_model_registers_its_training_works(generator, producer):
    first_works(generator, 2)
    job = generation_request(created_by=producer, prompt="calm piano, 20 s", seed="5")

    generation_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert TrainingReference.objects.filter(generator=generator).count() == 2


def test_each_cue_has_a_signed_generation_record_with_the_model_and_its_training_data(generator, producer):
    job = generation_request(created_by=producer, prompt=ISSUE_PROMPT, seed="12345678901234567890", variations=2)

    generation_run(job_id=job.pk)

    cues = [result.cue for result in job.results.all()]
    assert [cue.source for cue in cues] == [Cue.Source.GENERATED] * 2
    for position, cue in enumerate(cues):
        record = OutboxRecord.objects.get(reference=cue.provenance_reference)
        predicate = record.predicate
        assert record.kind == "generation" and record.subjects == [[f"{cue.code}.mid", cue.midi_id]]
        assert predicate["generator"]["version"] == generator.version == predicate["generator"]["weights_digest"]
        assert predicate["seed"] == str((12345678901234567890 + position) % 2**64)
        assert predicate["parameters"]["spec"]["hit_points"][0]["timecode"] == "00:01:05:12"
        assert predicate["parameters"]["memorisation_filter"]["threshold"] == FILTER_THRESHOLD
        assert predicate["generator"]["code_version"] == CODE_VERSION
        assert [d["name"] for d in predicate["training_datasets"]] == [
            c["name"] for c in generator.manifest["collections"]
        ]
        secret = PromptSecret.objects.get(reference=cue.provenance_reference)
        assert secret.plaintext == ISSUE_PROMPT and secret.commitment == predicate["prompt_commitment"]["value"]
        assert cue.licence_constraints == services.licence_constraints(generator)
    job.refresh_from_db()
    assert job.prompt == ""  # the job's copy of the confidential prompt is gone once the cues hold theirs


def test_a_job_that_died_half_way_resumes_after_its_last_cue(generator, producer, monkeypatch, settings):
    job = generation_request(created_by=producer, prompt="calm piano, 20 s", seed="1", variations=3)
    real = services._cue_make
    made = []

    def die_after_the_first(*args, **kwargs):
        if made:
            raise SystemExit("the worker was killed")
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(services, "_cue_make", die_after_the_first)
    with pytest.raises(SystemExit):
        generation_run(job_id=job.pk)
    monkeypatch.setattr(services, "_cue_make", real)
    settings.CUELEDGER_JOB_LEASE_SECONDS = 0  # the dead attempt's lease has run out

    generation_run(job_id=job.pk)

    job.refresh_from_db()
    assert (job.status, job.attempts) == (GenerationJob.Status.SUCCEEDED, 2)
    assert [result.seed for result in job.results.all()] == ["1", "2", "3"]
    assert Cue.objects.count() == 3


def test_a_job_that_cannot_compose_fails_and_says_why(generator, producer, monkeypatch):
    from generation.composer import ComposerError

    job = generation_request(created_by=producer, prompt="calm piano, 20 s")

    def unreachable(*args, **kwargs):
        raise ComposerError("hit_unreachable", "the hit cannot land on a downbeat")

    monkeypatch.setattr(services, "compose_unlike", unreachable)
    generation_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert job.error == "hit_unreachable: the hit cannot land on a downbeat"
    assert job.prompt == "" and not Cue.objects.exists()


def test_a_finished_job_is_not_run_again(generator, producer):
    job = generation_request(created_by=producer, prompt="calm piano, 20 s")
    generation_run(job_id=job.pk)
    generation_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.attempts == 1 and job.results.count() == 1


def test_without_a_seed_one_is_drawn_and_recorded(generator, producer):
    job = generation_request(created_by=producer, prompt="calm piano, 20 s")
    assert job.seed.isdigit() and 0 <= int(job.seed) < 2**64


def test_a_twenty_minute_cue_at_the_slowest_tempo_ends_on_its_length_and_is_ingested(generator, producer):
    job = generation_request(created_by=producer, prompt="calm piano, 31 bpm, 5/4, 20 minutes", seed="9")

    generation_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    assert job.results.get().cue.duration_seconds == pytest.approx(1200.0, abs=0.001)


def test_a_task_that_gives_up_fails_its_job_and_drops_the_prompt(generator, producer):
    from generation.tasks import generation_run_task

    job = generation_request(created_by=producer, prompt="calm piano, 20 s")
    GenerationJob.objects.filter(pk=job.pk).update(status=GenerationJob.Status.RUNNING, attempts=1)

    generation_run_task.on_failure(TimeoutError("time limit"), "task-id", (), {"job_id": str(job.pk)}, None)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED and job.error.startswith("internal_error")
    assert "TimeoutError" not in job.error and job.prompt == "" and job.ignored == []


def test_a_worker_that_lost_its_lease_cannot_write_over_the_job(generator, producer, settings):
    job = generation_request(created_by=producer, prompt="calm piano, 20 s", variations=2)
    first = services._job_claim(job.pk)
    settings.CUELEDGER_JOB_LEASE_SECONDS = 0
    second = services._job_claim(job.pk)  # the lease ran out: another worker takes the job over

    assert services._job_progress(job.pk, first, stage="stale") is False
    assert services._job_progress(job.pk, second, stage="composing") is True
    job.refresh_from_db()
    assert (job.stage, job.attempts) == ("composing", 2)


def test_a_job_delivered_while_another_worker_holds_it_waits(generator, producer):
    job = generation_request(created_by=producer, prompt="calm piano, 20 s")
    services._job_claim(job.pk)

    with pytest.raises(services.JobBusy):
        generation_run(job_id=job.pk)


def test_a_job_started_too_often_fails_for_good(generator, producer):
    job = generation_request(created_by=producer, prompt="calm piano, 20 s")
    GenerationJob.objects.filter(pk=job.pk).update(attempts=services.JOB_MAX_ATTEMPTS)

    generation_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED and job.error.startswith("attempts_exhausted")


def test_the_memorisation_filter_compares_with_the_registered_training_works(generator, producer):
    generator = first_works(generator, 4)
    training_references_register(generator=generator)
    index = services.training_index(generator)
    assert sorted(index.reference_ids()) == sorted(
        TrainingReference.objects.filter(generator=generator).values_list("reference_id", flat=True)
    )
    job = generation_request(created_by=producer, prompt="calm piano, 30 s", seed="11")

    generation_run(job_id=job.pk)

    result = job.results.get()
    record = OutboxRecord.objects.get(reference=result.cue.provenance_reference)
    report = record.predicate["parameters"]["memorisation_filter"]
    assert report["composed_seed"] == result.composition["composed_seed"]
    assert report["attempts"] == len(report["rejected"]) + 1
