"""The similarity check: verdicts with evidence, the corpus version a report names, index files that survive
damage, signed records, re-checks with alerts for legal, and calibration of thresholds."""

import base64
import json

import pytest

from library.errors import LibraryError
from library.fingerprints import symbolic as symbolic_engine
from library.models import ProcessingJob, ReferenceWork, SimilarityAlert, SimilarityCalibration, SimilarityReport
from library.services import cue_ingest, cue_render, similarity_job_create
from library.services import similarity as similarity_services
from library.services.references import ReferenceInput, reference_import
from library.services.similarity import (
    corpus_version,
    cue_similarity_check,
    similarity_calibrate,
    similarity_check,
    similarity_recheck,
    thresholds_current,
)
from provenance.models import LedgerEntry, OutboxRecord
from provenance.services import outbox_drain
from tests.factories import midi_from_tracks, notes, tune, tune_midi

pytestmark = pytest.mark.django_db


def reference(legal, seed: int, title: str = ""):
    return reference_import(
        created_by=legal,
        work=ReferenceInput(title=title or f"Reference {seed}", midi=tune_midi(tune(seed), tempo_bpm=110)),
        recheck=False,
    )


@pytest.fixture
def corpus(legal):
    return [reference(legal, seed) for seed in (1, 2, 3, 4)]


def rendered(producer, midi: bytes, title: str = "Cue"):
    """A cue ingested and rendered in this process; returns it with its queued similarity job."""
    cue = cue_ingest(created_by=producer, title=title, midi=midi)
    cue_render(job_id=cue.jobs.get(kind="render").pk)
    cue.refresh_from_db()
    return cue, cue.jobs.get(kind="similarity", state=ProcessingJob.State.QUEUED)


def quoting_cue_midi(seed: int) -> bytes:
    """Eight bars of tune ``seed`` transposed up a minor third and slowed from 110 to 88 BPM, between sixteen
    bars of unrelated material."""
    return tune_midi(tune(500, bars=8), tune(seed), tune(501, bars=8), tempo_bpm=88, transpose=3, program=41)


def test_a_cue_quoting_eight_bars_transposed_and_slowed_is_flagged_with_evidence(producer, corpus):
    cue, job = rendered(producer, quoting_cue_midi(2))

    cue_similarity_check(job_id=job.pk)

    job.refresh_from_db()
    assert job.state == ProcessingJob.State.SUCCEEDED
    report = cue.similarity_reports.get()
    assert report.verdict == SimilarityReport.Verdict.FLAG and report.trigger == "ingest"
    symbolic = [m for m in report.matches if m["detector"] == "symbolic"]
    assert [m["reference"]["title"] for m in symbolic] == ["Reference 2"]
    evidence = symbolic[0]["evidence"]
    assert evidence["transposition"] % 12 == 3
    # The quote fills bars 9-16 of the cue and bars 1-8 of the reference.
    assert 8 <= evidence["cue_span"]["start_bar"] < 10 and 15 <= evidence["cue_span"]["end_bar"] <= 17.5
    assert evidence["reference_span"]["start_bar"] < 2
    assert report.corpus_version == corpus_version().as_dict()
    assert report.detectors == {"acoustic": {"ran": True}, "symbolic": {"ran": True}}


def test_an_unrelated_cue_passes(producer, corpus):
    cue, job = rendered(producer, tune_midi(tune(600), tune(601), tempo_bpm=96))

    cue_similarity_check(job_id=job.pk)

    report = cue.similarity_reports.get()
    assert report.verdict == SimilarityReport.Verdict.PASS and report.matches == []


def test_a_copied_recording_is_caught_by_the_acoustic_detector(producer, legal, corpus):
    copied = tune_midi(tune(3), tempo_bpm=110)
    cue, job = rendered(producer, copied)

    cue_similarity_check(job_id=job.pk)

    report = cue.similarity_reports.get()
    acoustic = [m for m in report.matches if m["detector"] == "acoustic"]
    assert [m["reference"]["title"] for m in acoustic] == ["Reference 3"]
    assert acoustic[0]["evidence"]["segments"][0]["bit_error_rate"] < 0.2


def test_against_an_empty_corpus_a_cue_passes_and_the_report_says_so(producer):
    cue, job = rendered(producer, tune_midi(tune(7)))

    cue_similarity_check(job_id=job.pk)

    report = cue.similarity_reports.get()
    assert report.verdict == "pass" and report.corpus_count == 0


def test_a_drum_only_cue_is_checked_acoustically_and_the_report_says_why_not_symbolically(producer, corpus):
    cue, job = rendered(producer, midi_from_tracks(notes([36, 38, 42, 38] * 16, channel=9)))

    cue_similarity_check(job_id=job.pk)

    report = cue.similarity_reports.get()
    assert report.detectors["acoustic"] == {"ran": True}
    assert report.detectors["symbolic"]["ran"] is False
    assert report.detectors["symbolic"]["code"] == "no_melodic_content"


def test_each_report_is_a_signed_similarity_record(producer, corpus):
    cue, job = rendered(producer, quoting_cue_midi(1))
    cue_similarity_check(job_id=job.pk)
    report = cue.similarity_reports.get()
    assert OutboxRecord.objects.filter(kind="similarity", reference=cue.provenance_reference).exists()

    outbox_drain()

    entry = LedgerEntry.objects.get(kind="similarity", reference=cue.provenance_reference)
    assert entry.subject_digest == cue.midi_id
    predicate = json.loads(base64.b64decode(json.loads(bytes(entry.envelope))["payload"]))["predicate"]
    assert predicate["report_id"] == str(report.pk) and predicate["verdict"] == "flag"
    assert predicate["corpus_version"] == report.corpus_version
    assert [m["reference_title"] for m in predicate["matches"]] == [m["reference"]["title"] for m in report.matches]
    assert all(len(m["evidence_digest"]) == 64 for m in predicate["matches"])


def test_indexes_are_kept_in_files_and_a_damaged_file_is_rebuilt(producer, corpus, settings, monkeypatch):
    cue, job = rendered(producer, tune_midi(tune(8)))
    similarity_check(cue=cue, trigger="request")
    files = sorted(settings.CUELEDGER_INDEX_DIR.glob("*.index"))
    assert [f.name.split("-")[0] for f in files] == ["acoustic", "symbolic"]

    # A new worker loads the files instead of building.
    similarity_services._loaded = None
    monkeypatch.setattr(similarity_services, "_index_build", lambda *a: pytest.fail("built instead of loaded"))
    similarity_check(cue=cue, trigger="request")
    monkeypatch.undo()

    # A file cut short (a crash of some other writer, a full disk) is never used: it is rebuilt.
    files[1].write_bytes(files[1].read_bytes()[:100])
    similarity_services._loaded = None
    report = similarity_check(cue=cue, trigger="request")
    assert report.corpus_count == 4 and files[1].stat().st_size > 100


def test_a_worker_dying_while_it_writes_an_index_leaves_no_index_file(producer, corpus, settings, monkeypatch):
    cue, job = rendered(producer, tune_midi(tune(8)))
    real_save = symbolic_engine.SymbolicIndex.save

    def save_half_then_die(index, path):
        real_save(index, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        raise KeyboardInterrupt  # stands in for SIGKILL, which a test cannot survive

    monkeypatch.setattr(symbolic_engine.SymbolicIndex, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        similarity_check(cue=cue, trigger="request")
    assert not list(settings.CUELEDGER_INDEX_DIR.glob("symbolic-*.index"))  # no half index under the real name

    monkeypatch.undo()
    similarity_services._loaded = None
    report = similarity_check(cue=cue, trigger="request")
    assert report.corpus_count == 4 and len(list(settings.CUELEDGER_INDEX_DIR.glob("symbolic-*.index"))) == 1


def test_a_check_racing_an_import_reports_the_corpus_it_used_and_is_queued_again(producer, legal, corpus, monkeypatch):
    cue, job = rendered(producer, tune_midi(tune(9)))
    used = similarity_services.corpus_indexes()
    job.delete()

    def indexes_then_an_import_lands(**kwargs):
        reference(legal, 77)
        return used

    monkeypatch.setattr(similarity_services, "corpus_indexes", indexes_then_an_import_lands)
    report = similarity_check(cue=cue, trigger="request")

    assert report.corpus_revision == used.version.revision < corpus_version().revision
    assert cue.jobs.filter(kind="similarity", state="queued", reason="references").exists()


def test_a_new_reference_that_a_checked_cue_copies_raises_an_alert_for_legal(producer, legal, corpus):
    cue, job = rendered(producer, quoting_cue_midi(30))
    cue_similarity_check(job_id=job.pk)
    assert cue.similarity_reports.get().verdict == "pass"

    added = reference(legal, 30, "Newly registered theme")
    queued, more = similarity_recheck()
    assert (queued, more) == (1, False)
    recheck = cue.jobs.get(kind="similarity", state="queued")
    cue_similarity_check(job_id=recheck.pk)

    latest = cue.similarity_reports.order_by("-created_at").first()
    assert latest.verdict == "flag" and latest.trigger == "references"
    alert = SimilarityAlert.objects.get(cue=cue)
    assert list(alert.references.all()) == [added]
    assert similarity_recheck() == (0, False)  # checked at the current revision: nothing more to do


def test_a_failed_check_leaves_the_rendered_cue_ready_and_is_not_retried_in_a_loop(producer, corpus, monkeypatch):
    cue, job = rendered(producer, tune_midi(tune(10)))

    def broken(*args, **kwargs):
        raise LibraryError("index_corrupt", "simulated: the index cannot be read")

    monkeypatch.setattr(similarity_services, "corpus_indexes", broken)
    cue_similarity_check(job_id=job.pk)

    job.refresh_from_db()
    cue.refresh_from_db()
    assert job.state == ProcessingJob.State.FAILED and job.error.startswith("index_corrupt")
    assert cue.status == "ready" and cue.processing_error == ""
    assert similarity_recheck() == (0, False)  # tried since the corpus last changed: not queued again


def test_a_check_already_queued_is_not_queued_twice(producer, corpus):
    cue, job = rendered(producer, tune_midi(tune(11)))
    assert similarity_job_create(cue_id=cue.pk, trigger="request") is None
    assert cue.jobs.filter(kind="similarity").count() == 1


def test_a_request_check_that_first_sees_new_works_still_alerts_once(producer, legal, corpus):
    cue, job = rendered(producer, quoting_cue_midi(31))
    cue_similarity_check(job_id=job.pk)
    reference(legal, 31, "Registered later")

    first = similarity_check(cue=cue, trigger="request")
    second = similarity_check(cue=cue, trigger="references")

    assert first.verdict == second.verdict == "flag"
    alert = SimilarityAlert.objects.get(cue=cue)  # one alert, not one per check
    assert alert.report == first and [r.title for r in alert.references.all()] == ["Registered later"]


def test_calibration_needs_two_works(legal):
    reference(legal, 1)
    with pytest.raises(LibraryError) as refused:
        similarity_calibrate()
    assert refused.value.code == "corpus_too_small"


def test_calibration_stores_a_threshold_per_detector_that_checks_then_use(corpus):
    calibrations = similarity_calibrate(target_fpr=1e-3, created_by="test")

    assert {c.detector for c in calibrations} == {"acoustic", "symbolic"}
    for calibration in calibrations:
        assert calibration.pairs == 12 and calibration.measured_fpr == 0  # 4 works: below 1/1e-3 pairs, none allowed
        assert calibration.corpus_count == 4
    current = thresholds_current()
    for calibration in SimilarityCalibration.objects.all():
        assert current[calibration.detector] == {"value": calibration.threshold, "calibration_id": calibration.pk}


def test_calibration_sets_aside_the_same_work_imported_twice(legal, corpus):
    reference(legal, 2, "Reference 2, imported again")

    calibrations = similarity_calibrate(target_fpr=1e-3)

    for calibration in calibrations:
        # 5 works make 20 ordered pairs; the two works that are one are not an unrelated pair, either way round.
        assert calibration.pairs == 18
        assert calibration.distribution["same_work_pairs"] == 2
        ids = sorted(w.pk for w in corpus if w.title == "Reference 2") + [
            max(w.pk for w in ReferenceWork.objects.all())
        ]
        assert calibration.distribution["same_work_examples"] == [ids]
