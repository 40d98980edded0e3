"""The generation API: requests are validated before anything is queued, jobs report progress and their cues, model
cards show training data and licences, and imports keep what the uploader claims as a claim."""

import io
import json

import pretty_midi
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from generation.models import GenerationJob
from generation.services import generation_run
from library.models import Cue
from provenance.models import OutboxRecord
from tests.factories import midi_sketch, user_in_role
from tests.generation.conftest import ISSUE_PROMPT
from tests.library.test_services_recordings import recording

pytestmark = pytest.mark.django_db


def post(api, user, body: dict):
    return api(user).post("/api/v1/generations/", body, format="json")


def test_a_prompt_is_parsed_echoed_and_queued(api, producer, generator):
    response = post(api, producer, {"prompt": ISSUE_PROMPT + ", with kazoo", "variations": 3, "seed": "42"})

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["progress"] == 0.0 and body["cue_ids"] == []
    spec = body["spec"]
    assert (spec["tempo_bpm"], spec["key"], spec["mode"], spec["meter"]) == (120.0, "D", "minor", "6/8")
    assert spec["duration_seconds"] == 90.0
    assert [hit["time_seconds"] for hit in spec["hit_points"]] == [65.5]
    assert "kazoo" in body["ignored"]
    assert (body["seed"], body["variations"]) == ("42", 3)
    assert body["generator"]["version"] == generator.version
    assert GenerationJob.objects.get().status == GenerationJob.Status.QUEUED


def test_the_job_reports_its_cues_when_done(api, producer, generator):
    job_id = post(api, producer, {"prompt": ISSUE_PROMPT, "variations": 3, "seed": "42"}).json()["id"]

    generation_run(job_id=job_id)

    body = api(producer).get(f"/api/v1/generations/{job_id}/").json()
    assert (body["status"], body["progress"], body["error"]) == ("succeeded", 1.0, "")
    assert len(body["cue_ids"]) == 3
    assert [cue["seed"] for cue in body["cues"]] == ["42", "43", "44"]
    cue = api(producer).get(f"/api/v1/cues/{body['cue_ids'][0]}/").json()
    assert cue["source"] == "generated" and cue["status"] == "analysing"
    assert cue["licence_constraints"]["generator_version"] == generator.version
    assert cue["analysis"]["time_signatures"][0] == "6/8"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": "   "}, "prompt_empty"),
        ({}, "prompt_empty"),
        ({"prompt": "x" * 2001}, "prompt_too_long"),
        ({"prompt": "calm piano, 500 bpm"}, "tempo_out_of_range"),
        ({"prompt": "calm piano, 3 seconds"}, "duration_out_of_range"),
        ({"prompt": "calm piano, 30 minutes"}, "duration_out_of_range"),
        ({"prompt": "calm piano, 1:00, hit at 00:01:10:00 @ 24 fps"}, "hit_after_end"),
        ({"prompt": "calm piano, 1:00, hits at 00:00:30:00 and 00:00:31:00 @ 24 fps"}, "hits_too_close"),
        ({"prompt": "calm piano, 1:00, hit at 00:00:30:00 @ 60 fps"}, "frame_rate_unsupported"),
        ({"prompt": "calm piano, 1:00, hit at 00:00:30:31 @ 30 fps"}, "timecode_invalid"),
        ({"prompt": "calm piano, 90 bpm, 120 bpm"}, "tempo_conflict"),
        ({"prompt": "calm piano", "seed": 42}, "seed_invalid"),
        ({"prompt": "calm piano", "seed": "18446744073709551616"}, "seed_invalid"),
        ({"prompt": "calm piano", "variations": 0}, "variations_invalid"),
        ({"prompt": "calm piano", "variations": 9}, "variations_invalid"),
        ({"prompt": "calm piano", "tempo": 90}, "field_unknown"),
        ({"prompt": "calm piano", "tempo_bpm": "fast"}, "field_invalid"),
        ({"prompt": "calm piano", "tempo_bpm": 10**400}, "field_invalid"),
        ({"prompt": "calm piano", "hit_points": [{"time_seconds": 10**400}]}, "field_invalid"),
        ({"prompt": "calm piano", "arc": [{"time_seconds": 1, "level": 0.5}] * 65}, "field_invalid"),
        ({"prompt": "calm piano, 31 bpm, 21 minutes"}, "duration_out_of_range"),
    ],
)
def test_bad_requests_get_a_code_and_queue_nothing(api, producer, generator, body, code):
    response = post(api, producer, body)

    assert response.status_code == 400, response.json()
    assert response.json()["code"] == code
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": "calm piano \ud800"}, "prompt_invalid"),
        ({"prompt": "calm piano", "title": "A \ud800 title"}, "title_invalid"),
        ({"prompt": "calm piano", "genre": "\udfff"}, "field_invalid"),
    ],
)
def test_a_lone_surrogate_in_the_json_is_refused(api, producer, generator, body, code):
    # JSON may carry "\ud800" escaped; no UTF-8 column can store what it decodes to.
    raw = json.dumps(body)  # ensure_ascii keeps the escape, as a client's JSON encoder would
    response = api(producer).post("/api/v1/generations/", raw, content_type="application/json")

    assert response.status_code == 400 and response.json()["code"] == code
    assert not GenerationJob.objects.exists()


def test_structured_fields_win_over_the_text(api, producer, generator):
    body = post(api, producer, {"prompt": ISSUE_PROMPT, "tempo_bpm": 96, "duration_seconds": 80}).json()
    assert (body["spec"]["tempo_bpm"], body["spec"]["duration_seconds"]) == (96.0, 80.0)


def test_only_producers_and_admins_generate(api, supervisor, legal, generator):
    for user in (supervisor, legal):
        response = post(api, user, {"prompt": "calm piano"})
        assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_a_job_is_private_to_its_producer_and_legal(api, producer, legal, generator):
    job_id = post(api, producer, {"prompt": "calm piano, 20 s"}).json()["id"]
    other = user_in_role("producer")

    assert api(other).get(f"/api/v1/generations/{job_id}/").status_code == 404
    assert api(legal).get(f"/api/v1/generations/{job_id}/").status_code == 200
    assert api(producer).get("/api/v1/generations/").json()["count"] == 1


def test_versions_of_a_generated_cue_are_cues_linked_to_it(api, producer, generator):
    job_id = post(api, producer, {"prompt": ISSUE_PROMPT, "seed": "7"}).json()["id"]
    generation_run(job_id=job_id)
    parent = GenerationJob.objects.get(pk=job_id).results.get().cue

    response = api(producer).post(
        f"/api/v1/cues/{parent.pk}/versions/", {"edits": ["cutdown-30", "no-percussion", "underscore"]}, format="json"
    )
    assert response.status_code == 202, response.json()
    generation_run(job_id=response.json()["id"])

    versions = api(producer).get(f"/api/v1/cues/{parent.pk}/versions/").json()["results"]
    assert [v["version_label"] for v in versions] == ["30 s cut-down", "no percussion", "underscore (no melody)"]
    assert all(v["parent"]["id"] == str(parent.pk) for v in versions)
    cutdown, no_percussion, underscore = (Cue.objects.get(pk=v["id"]) for v in versions)
    assert cutdown.duration_seconds == pytest.approx(30.0, abs=0.001)
    assert not no_percussion.instruments.filter(is_drum=True).exists()
    assert parent.instruments.filter(is_drum=True).exists()
    assert underscore.instruments.count() < parent.instruments.count()
    record = OutboxRecord.objects.get(reference=cutdown.provenance_reference)
    assert record.kind == "generation"
    assert record.predicate["derived_from"] == {
        "cue": {"id": str(parent.pk), "code": parent.code, "title": parent.title},
        "midi_sha256": parent.midi_id,
        "edit": "30 s cut-down",
    }
    parent_record = OutboxRecord.objects.get(reference=parent.provenance_reference)
    assert record.predicate["prompt_commitment"] == parent_record.predicate["prompt_commitment"]


def test_versions_are_made_by_the_cues_producer_from_the_original_only(api, producer, admin_user, generator):
    job_id = post(api, producer, {"prompt": "calm piano, 45 s", "seed": "3"}).json()["id"]
    generation_run(job_id=job_id)
    cue = GenerationJob.objects.get(pk=job_id).results.get().cue
    Cue.objects.filter(pk=cue.pk).update(status=Cue.Status.READY)
    both = user_in_role("producer")
    both.groups.add(*user_in_role("supervisor").groups.all())  # a producer who may also browse ready cues

    refused = api(both).post(f"/api/v1/cues/{cue.pk}/versions/", {"edits": ["underscore"]}, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"
    unknown = api(producer).post(f"/api/v1/cues/{cue.pk}/versions/", {"edits": ["underscore"], "x": 1}, format="json")
    assert unknown.json()["code"] == "field_unknown"

    made = api(admin_user).post(f"/api/v1/cues/{cue.pk}/versions/", {"edits": ["cutdown-30"]}, format="json")
    generation_run(job_id=made.json()["id"])
    version = Cue.objects.get(parent=cue)
    again = api(admin_user).post(f"/api/v1/cues/{version.pk}/versions/", {"edits": ["underscore"]}, format="json")
    assert again.status_code == 400 and again.json()["code"] == "cue_is_a_version"
    # The admin's version is not the producer's cue, so the producer's list leaves it out rather than failing.
    assert api(producer).get(f"/api/v1/cues/{cue.pk}/versions/").json()["count"] == 0
    assert api(admin_user).get(f"/api/v1/cues/{cue.pk}/versions/").json()["count"] == 1
    prompts = api(admin_user).get(f"/api/v1/cues/{version.pk}/prompt/").json()["results"]
    assert [p["prompt"] for p in prompts] == ["calm piano, 45 s"]  # made from its parent's prompt


@pytest.mark.parametrize(
    ("edits", "code"),
    [([], "edits_invalid"), (["cutdown-90"], "edit_unknown"), (["cutdown-60", "cutdown-60"], "edits_invalid")],
)
def test_bad_version_requests_are_refused(api, producer, generator, edits, code):
    job_id = post(api, producer, {"prompt": "calm piano, 45 s", "seed": "1"}).json()["id"]
    generation_run(job_id=job_id)
    cue = GenerationJob.objects.get(pk=job_id).results.get().cue

    response = api(producer).post(f"/api/v1/cues/{cue.pk}/versions/", {"edits": edits}, format="json")

    assert response.status_code == 400 and response.json()["code"] == code
    too_long = api(producer).post(f"/api/v1/cues/{cue.pk}/versions/", {"edits": ["cutdown-60"]}, format="json")
    assert too_long.json()["code"] == "cutdown_too_long"


def test_an_imported_cue_has_no_versions_to_make(api, producer, generator):
    cue_id = (
        api(producer)
        .post("/api/v1/cues/", {"title": "Up", "midi": SimpleUploadedFile("u.mid", midi_sketch())}, format="multipart")
        .json()["id"]
    )
    response = api(producer).post(f"/api/v1/cues/{cue_id}/versions/", {"edits": ["underscore"]}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "cue_not_generated"


def test_the_model_card_lists_training_works_and_licences(api, producer, supervisor, generator):
    assert api(supervisor).get("/api/v1/generators/").status_code == 403  # models and data are not theirs to see
    body = api(producer).get("/api/v1/generators/").json()

    card = body["results"][0]
    assert (card["version"], card["is_default"]) == (generator.version, True)
    assert card["model_sha256"] == generator.version
    assert len(card["works"]) == sum(c["work_count"] for c in card["collections"]) > 0
    for collection in card["collections"]:
        assert collection["license"] and collection["statement"] and collection["source"]
    assert {w["license"] for w in card["works"]} <= {c["license"] for c in card["collections"]}
    assert card["licence_constraints"]["training_licences"] == sorted({c["license"] for c in card["collections"]})


def test_an_import_keeps_the_uploaders_claims_as_claims(api, producer):
    response = api(producer).post(
        "/api/v1/imports/",
        {
            "title": "From elsewhere",
            "midi": SimpleUploadedFile("e.mid", midi_sketch(seed=3)),
            "tool": "Other Tool",
            "model": "other-model",
            "model_version": "2.1",
            "terms_url": "https://example.com/terms",
            "training_data_statement": "Licensed stems only.",
        },
        format="multipart",
    )

    assert response.status_code == 201, response.json()
    cue = Cue.objects.get(pk=response.json()["id"])
    assert cue.source == Cue.Source.IMPORTED and cue.licence_constraints == {}
    record = OutboxRecord.objects.get(reference=cue.provenance_reference)
    assert record.kind == "ingest"
    assert record.predicate["claimed_origin"] == {
        "tool": "Other Tool",
        "model": "other-model",
        "model_version": "2.1",
        "terms_url": "https://example.com/terms",
        "training_data_statement": "Licensed stems only.",
    }


def test_a_recording_can_be_imported_without_midi(api, producer):
    response = api(producer).post(
        "/api/v1/imports/",
        {"title": "Recorded", "audio": SimpleUploadedFile("r.wav", recording()), "tool": "A DAW"},
        format="multipart",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["artifacts"]["midi"] is None and body["artifacts"]["source_audio"]["media_type"] == "audio/wav"
    assert body["analysis"]["tempo_bpm"] is None and body["analysis"]["analysed_from"] == "audio"
    midi = api(producer).get(f"/api/v1/cues/{body['id']}/midi/")
    assert midi.status_code == 404 and midi.json()["code"] == "midi_missing"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"tool": "X"}, "file_required"),
        ({"tool": "X", "terms_url": "not a url", "midi": "m"}, "validation_error"),
        ({"midi": "m"}, "validation_error"),  # the tool is the least an uploader must claim
        ({"tool": "X", "audio": "bad"}, "audio_unreadable"),
    ],
)
def test_bad_imports_are_refused_and_leave_nothing(api, producer, fields, code):
    files = {"midi": SimpleUploadedFile("m.mid", midi_sketch()), "audio": SimpleUploadedFile("b.wav", b"RIFFjunk")}
    body = {"title": "Bad", **{k: files.get(k, v) if v in ("m", "bad") else v for k, v in fields.items()}}

    response = api(producer).post("/api/v1/imports/", body, format="multipart")

    assert response.status_code == 400 and response.json()["code"] == code
    assert not Cue.objects.exists()


def test_generated_midi_is_the_same_for_the_same_seed(api, producer, generator):
    first = post(api, producer, {"prompt": ISSUE_PROMPT, "seed": "99"}).json()["id"]
    second = post(api, producer, {"prompt": ISSUE_PROMPT, "seed": "99"}).json()["id"]
    generation_run(job_id=first)
    generation_run(job_id=second)

    a, b = (GenerationJob.objects.get(pk=job).results.get().cue for job in (first, second))
    assert a.pk != b.pk and a.midi_id == b.midi_id
    with default_storage.open(a.midi.storage_name) as handle:
        score = pretty_midi.PrettyMIDI(io.BytesIO(handle.read()))
    downbeats = score.get_downbeats()
    assert min(abs(d - 65.5) for d in downbeats) <= 0.001


def test_an_import_over_the_recording_limit_is_refused_before_it_is_read(api, producer, settings):
    settings.CUELEDGER_MAX_REFERENCE_AUDIO_BYTES = 10_000
    settings.CUELEDGER_MAX_UPLOAD_BYTES = 10_000
    response = api(producer).post(
        "/api/v1/imports/",
        {"title": "Big", "audio": SimpleUploadedFile("big.wav", recording(seconds=2.0)), "tool": "X"},
        format="multipart",
    )
    assert response.status_code == 400 and response.json()["code"] == "file_too_large"
    assert not Cue.objects.exists()
