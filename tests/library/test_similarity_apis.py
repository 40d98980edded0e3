"""The reference-work and similarity API: who may import and read, the report with its evidence pictures, alerts."""

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from library.models import ReferenceWork, SimilarityAlert
from library.services import cue_ingest, cue_render
from library.services.references import ReferenceInput, reference_import
from library.services.similarity import cue_similarity_check, similarity_check
from tests.factories import client_for, tune, tune_midi, user_in_role

pytestmark = pytest.mark.django_db


def upload(data: bytes, name: str):
    return SimpleUploadedFile(name, data)


def test_legal_imports_a_reference_work_with_its_metadata(legal):
    response = client_for(legal).post(
        "/api/v1/reference-works/",
        {
            "title": "Main theme",
            "midi": upload(tune_midi(tune(1)), "theme.mid"),
            "composers": ["A. Composer; B. Composer"],
            "iswc": "T-034.524.680-1",
            "source": "publisher catalogue",
        },
        format="multipart",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["composers"] == ["A. Composer", "B. Composer"]
    assert body["iswc"] == "T-034.524.680-1"
    assert body["detectors"] == ["acoustic", "symbolic"] and body["has_midi"] and not body["has_audio"]
    listed = client_for(legal).get("/api/v1/reference-works/").json()
    assert [work["title"] for work in listed["results"]] == ["Main theme"]
    corpus = client_for(legal).get("/api/v1/similarity/corpus/").json()
    assert corpus["version"]["count"] == 1 and corpus["version"]["revision"] >= 1


@pytest.mark.parametrize("role", ["producer", "supervisor"])
def test_only_legal_and_admins_import_or_list_references(role, request):
    user = request.getfixturevalue(role)
    response = client_for(user).post(
        "/api/v1/reference-works/", {"title": "x", "midi": upload(tune_midi(tune(1)), "x.mid")}, format="multipart"
    )
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert client_for(user).get("/api/v1/reference-works/").status_code == 403
    assert not ReferenceWork.objects.exists()


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"title": "No file"}, "file_required"),
        ({"title": "Bad ISWC", "iswc": "T-034.524.680-9"}, "iswc_invalid"),
        ({"title": "Bad ISRC", "isrc": "nope"}, "isrc_invalid"),
        ({"title": "Not audio", "audio": upload(b"definitely not audio" * 10, "x.wav")}, "audio_unreadable"),
    ],
)
def test_bad_reference_imports_get_stable_codes(admin_user, fields, code):
    if code in ("iswc_invalid", "isrc_invalid"):
        fields = {**fields, "midi": upload(tune_midi(tune(1)), "x.mid")}
    response = client_for(admin_user).post("/api/v1/reference-works/", fields, format="multipart")
    assert response.status_code == 400 and response.json()["code"] == code
    assert not ReferenceWork.objects.exists()


@pytest.fixture
def flagged_cue(producer, legal):
    reference_import(
        created_by=legal,
        work=ReferenceInput(title="Protected theme", midi=tune_midi(tune(2), tempo_bpm=110)),
        recheck=False,
    )
    cue = cue_ingest(
        created_by=producer,
        title="Suspicious",
        midi=tune_midi(tune(500, bars=8), tune(2), tempo_bpm=88, transpose=3, program=41),
    )
    cue_render(job_id=cue.jobs.get(kind="render").pk)
    cue_similarity_check(job_id=cue.jobs.get(kind="similarity").pk)
    return cue


def test_the_cue_s_report_names_the_reference_with_evidence_and_a_picture(producer, flagged_cue):
    body = client_for(producer).get(f"/api/v1/cues/{flagged_cue.pk}/similarity/").json()

    assert body["verdict"] == "flag" and body["pending"] is False
    match = next(m for m in body["latest"]["matches"] if m["detector"] == "symbolic")
    assert match["reference"]["title"] == "Protected theme"
    assert match["evidence"]["cue_span"]["start_bar"] >= 8
    assert [h["verdict"] for h in body["history"]] == ["flag"]
    picture = client_for(producer).get(match["image_url"])
    assert picture.status_code == 200 and picture["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(picture.content))
    assert image.size == (1200, 520)
    # Both colours are drawn: the cue's notes in blue and the reference's in red.
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    red, blue = pixels[:, 0], pixels[:, 2]
    assert ((blue > 150) & (red < 120)).any() and ((red > 180) & (blue < 120)).any()


def test_an_acoustic_match_is_drawn_as_its_bit_error_curve(producer, legal):
    reference_import(created_by=legal, work=ReferenceInput(title="Recording", midi=tune_midi(tune(3))), recheck=False)
    cue = cue_ingest(created_by=producer, title="Copy", midi=tune_midi(tune(3)))
    cue_render(job_id=cue.jobs.get(kind="render").pk)
    cue.refresh_from_db()
    report = similarity_check(cue=cue, trigger="request")
    number = next(n for n, m in enumerate(report.matches) if m["detector"] == "acoustic")

    picture = client_for(producer).get(f"/api/v1/similarity-reports/{report.pk}/matches/{number}/image/")

    assert picture.status_code == 200 and Image.open(io.BytesIO(picture.content)).format == "PNG"
    missing = client_for(producer).get(f"/api/v1/similarity-reports/{report.pk}/matches/99/image/")
    assert missing.status_code == 404 and missing.json()["code"] == "match_not_found"


def test_reports_are_hidden_from_those_who_cannot_see_the_cue(flagged_cue):
    stranger = client_for(user_in_role("producer"))
    assert stranger.get(f"/api/v1/cues/{flagged_cue.pk}/similarity/").status_code == 404
    report = flagged_cue.similarity_reports.get()
    assert stranger.get(f"/api/v1/similarity-reports/{report.pk}/matches/0/image/").status_code == 404


def test_a_check_can_be_asked_for_again(producer, flagged_cue):
    response = client_for(producer).post(f"/api/v1/cues/{flagged_cue.pk}/similarity/")
    assert response.status_code == 202 and response.json()["job"]
    again = client_for(producer).post(f"/api/v1/cues/{flagged_cue.pk}/similarity/")
    assert again.status_code == 202 and again.json()["job"] is None  # one is already queued


def test_legal_sees_and_acknowledges_alerts(legal, producer, flagged_cue):
    alert = SimilarityAlert.objects.create(cue=flagged_cue, report=flagged_cue.similarity_reports.get())
    alert.references.set(ReferenceWork.objects.all())

    listed = client_for(legal).get("/api/v1/similarity/alerts/?open=1").json()
    assert [a["cue"]["code"] for a in listed["results"]] == [flagged_cue.code]
    assert listed["results"][0]["references"][0]["title"] == "Protected theme"
    assert client_for(producer).get("/api/v1/similarity/alerts/").status_code == 403

    done = client_for(legal).post(f"/api/v1/similarity/alerts/{alert.pk}/acknowledge/")
    assert done.status_code == 200 and done.json()["acknowledged_by"] == legal.username
    assert client_for(legal).get("/api/v1/similarity/alerts/?open=1").json()["results"] == []
