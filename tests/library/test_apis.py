"""The catalog's REST API, for each role, through real requests with token authentication."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from library.models import Artifact, Cue, ProcessingJob
from library.services import cue_ingest, cue_render
from tests.factories import midi_sketch, user_in_role

CUES = "/api/v1/cues/"


def upload(client, data: bytes | None = None, **fields):
    payload = {"title": "Opening titles", **fields}
    if data is not None:
        payload["midi"] = SimpleUploadedFile("cue.mid", data, content_type="audio/midi")
    return client.post(CUES, payload, format="multipart")


def rendered_cue(user, **sketch) -> Cue:
    cue = cue_ingest(created_by=user, title="Rendered", midi=midi_sketch(**sketch))
    cue_render(job_id=cue.jobs.get(kind="render").pk)
    cue.refresh_from_db()
    return cue


def test_a_producer_uploads_a_cue_and_gets_it_back_analysed(api, producer):
    response = upload(
        api(producer),
        midi_sketch(tonic="E", mode="minor", tempo_bpm=132, drums=True),
        description="Drums and strings",
        moods=["tense", "driving"],
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["code"].startswith("CUE-") and body["status"] == "analysing"
    assert sorted(body["moods"]) == ["driving", "tense"]
    analysis = body["analysis"]
    assert (analysis["key"], analysis["mode"], analysis["tempo_bpm"]) == ("E minor", "minor", 132.0)
    assert analysis["time_signatures"] == ["4/4"]
    assert {"program", "name", "family", "is_drum", "note_count"} <= set(analysis["instruments"][0])
    assert {i["family"] for i in analysis["instruments"]} >= {"drums", "ensemble"}
    assert len(analysis["energy"]) == int(analysis["duration_seconds"]) + 1
    assert body["artifacts"]["midi"]["sha256"] == Cue.objects.get(pk=body["id"]).midi_id
    assert body["artifacts"]["audio"] is None
    assert body["processing"]["state"] == "queued"


def test_moods_may_be_given_comma_separated(api, producer):
    response = upload(api(producer), midi_sketch(), moods="warm, hopeful")
    assert sorted(response.json()["moods"]) == ["hopeful", "warm"]


@pytest.mark.parametrize("role", ["supervisor", "legal"])
def test_supervisors_and_legal_cannot_upload(api, role, db):
    response = upload(api(user_in_role(role)), midi_sketch())
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


def test_without_a_token_the_api_refuses(db):
    response = APIClient().get(CUES)
    assert response.status_code in (401, 403)
    assert response.json()["code"] == "not_authenticated"


def test_a_wrong_token_is_refused(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0000")
    assert client.get(CUES).json()["code"] == "authentication_failed"


@pytest.mark.parametrize(
    "data, fields, code",
    [
        (b"just some text", {}, "midi_invalid"),
        (midi_sketch(bars=4)[:-5], {}, "midi_truncated"),
        (None, {}, "validation_error"),
        (midi_sketch(), {"title": ""}, "validation_error"),
        (midi_sketch(), {"title": "x" * 201}, "validation_error"),
        (midi_sketch(), {"moods": "no/way"}, "mood_invalid"),
        (midi_sketch(tempo_bpm=30, bars=160), {}, "duration_too_long"),
    ],
    ids=["not-midi", "truncated", "no-file", "blank-title", "long-title", "bad-mood", "too-long"],
)
def test_bad_uploads_get_a_400_with_a_code_and_leave_nothing(api, producer, data, fields, code):
    response = upload(api(producer), data, **fields)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == code and body["detail"]
    assert (Cue.objects.count(), Artifact.objects.count(), ProcessingJob.objects.count()) == (0, 0, 0)


def test_a_file_field_given_as_text_is_a_validation_error(api, producer):
    response = api(producer).post(CUES, {"title": "T", "midi": "not a file"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert "midi" in response.json()["fields"]


def test_an_oversized_file_is_refused(api, producer, settings):
    settings.CUELEDGER_MAX_UPLOAD_BYTES = 1_000
    response = upload(api(producer), midi_sketch(bars=32))
    assert response.status_code == 400 and response.json()["code"] == "file_too_large"


def test_an_oversized_request_body_is_refused_before_it_is_read(api, producer, settings):
    settings.CUELEDGER_MAX_UPLOAD_BYTES = 1_000
    client = api(producer)
    body = b"x" * (2 << 20)
    response = client.generic("POST", CUES, body, content_type="multipart/form-data; boundary=zzz")
    assert response.status_code == 400 and response.json()["code"] == "file_too_large"


def test_json_uploads_are_unsupported(api, producer):
    response = api(producer).post(CUES, {"title": "T"}, format="json")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"


def test_listing_is_paginated_and_limited_to_what_the_user_may_see(api, producer, supervisor):
    rendered_cue(producer, seed=1)
    cue_ingest(created_by=producer, title="Not yet", midi=midi_sketch(seed=2))
    body = api(supervisor).get(CUES).json()
    assert body["count"] == 1 and [c["title"] for c in body["results"]] == ["Rendered"]
    assert {"next", "previous"} <= set(body)
    assert api(producer).get(CUES, {"page_size": 1}).json()["next"]


def test_listing_filters_by_analysis_and_moods(api, producer):
    cue_ingest(
        created_by=producer,
        title="Slow minor",
        midi=midi_sketch(tonic="A", mode="minor", tempo_bpm=70, bars=8),
        moods=["sad"],
    )
    cue_ingest(
        created_by=producer,
        title="Fast major drums",
        midi=midi_sketch(tonic="C", tempo_bpm=150, bars=8, drums=True),
        moods=["action"],
    )
    client = api(producer)

    def titles(**query):
        response = client.get(CUES, query)
        assert response.status_code == 200, response.json()
        return [c["title"] for c in response.json()["results"]]

    assert titles(tempo_min=100) == ["Fast major drums"]
    assert titles(tempo_max=100) == ["Slow minor"]
    assert titles(mode="minor") == ["Slow minor"]
    assert titles(key="a MINOR") == ["Slow minor"]
    assert titles(mood="action") == ["Fast major drums"]
    assert titles(instrument_family="drums") == ["Fast major drums"]
    assert titles(duration_min=20) == ["Slow minor"]  # 8 bars at 70 bpm = 27 s; at 150 bpm = 13 s
    assert titles(duration_max=20) == ["Fast major drums"]
    assert titles(status="analysing", ordering="title") == ["Fast major drums", "Slow minor"]
    assert titles(status="ready") == []


def test_a_bad_filter_value_is_a_validation_error(api, producer):
    response = api(producer).get(CUES, {"tempo_min": "fast"})
    assert response.status_code == 400 and response.json()["code"] == "validation_error"
    response = api(producer).get(CUES, {"instrument_family": "kazoo"})
    assert response.status_code == 400 and "instrument_family" in response.json()["fields"]


def test_downloads_have_the_right_content_types(api, producer):
    cue = rendered_cue(producer, bars=2)
    client = api(producer)
    expected = {
        f"{CUES}{cue.pk}/midi/": ("audio/midi", cue.midi),
        f"{CUES}{cue.pk}/audio/": ("audio/flac", cue.audio),
        f"{CUES}{cue.pk}/audio/?format=flac": ("audio/flac", cue.audio),
        f"{CUES}{cue.pk}/audio/?format=preview": ("audio/ogg", cue.preview),
        f"{CUES}{cue.pk}/waveform/": ("application/json", cue.waveform),
    }
    for url, (media_type, artifact) in expected.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["Content-Type"] == media_type
        assert response["ETag"] == f'"{artifact.sha256}"'
        assert "attachment" in response["Content-Disposition"] and cue.code in response["Content-Disposition"]
        assert len(b"".join(response.streaming_content)) == artifact.size


def test_the_detail_lists_artifact_urls_that_work(api, producer):
    cue = rendered_cue(producer, bars=2)
    client = api(producer)
    body = client.get(f"{CUES}{cue.pk}/").json()
    # The latest job is the similarity check that rendering queued.
    assert body["status"] == "ready" and body["processing"]["kind"] == "similarity"
    for kind in ("midi", "audio", "preview", "waveform"):
        ref = body["artifacts"][kind]
        response = client.get(ref["url"])
        assert response.status_code == 200 and response["ETag"] == f'"{ref["sha256"]}"'


def test_audio_before_rendering_is_a_conflict(api, producer):
    cue = cue_ingest(created_by=producer, title="Queued", midi=midi_sketch())
    response = api(producer).get(f"{CUES}{cue.pk}/audio/")
    assert response.status_code == 409 and response.json()["code"] == "audio_not_ready"


def test_an_unknown_audio_format_is_refused(api, producer):
    cue = rendered_cue(producer)
    response = api(producer).get(f"{CUES}{cue.pk}/audio/", {"format": "wav"})
    assert response.status_code == 400 and response.json()["code"] == "format_invalid"


def test_another_producers_cue_is_not_found(api, producer):
    cue = rendered_cue(producer)
    other = api(user_in_role("producer"))
    for suffix in ("", "midi/", "audio/"):
        response = other.get(f"{CUES}{cue.pk}/{suffix}")
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_an_unknown_url_answers_json(api, producer):
    response = api(producer).get("/api/v1/cues/not-a-uuid/")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_me_tells_the_roles(api, legal):
    assert api(legal).get("/api/v1/me/").json() == {"username": legal.username, "roles": ["legal"]}


def test_the_openapi_schema_and_docs_are_served(api, producer):
    schema = api(producer).get("/api/schema/", {"format": "json"}, HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/v1/cues/" in text and "tokenAuth" in text
    docs = APIClient().get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


def test_the_midi_download_is_byte_identical_to_the_upload(api, producer):
    data = midi_sketch(seed=11)
    body = upload(api(producer), data).json()
    response = api(producer).get(f"{CUES}{body['id']}/midi/")
    assert io.BytesIO(b"".join(response.streaming_content)).getvalue() == data


def test_a_session_sign_in_works_for_the_api(db):
    from cueledger.roles import user_create

    user_create(username="sam", role="supervisor", password="a long enough password")
    client = APIClient()
    page = client.get("/api/auth/login/")
    assert page.status_code == 200
    response = client.post("/api/auth/login/", {"username": "sam", "password": "a long enough password"})
    assert response.status_code == 302 and response["Location"] == "/api/docs/"
    assert client.get("/api/v1/me/").json()["roles"] == ["supervisor"]


def test_a_signed_in_session_cannot_make_the_server_read_an_oversized_body(db, settings):
    """Session authentication checks CSRF, which parses the body: the size limit must come before it."""
    from cueledger.roles import user_create

    settings.CUELEDGER_MAX_UPLOAD_BYTES = 1_000
    user_create(username="sue", role="supervisor", password="a long enough password")
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="sue", password="a long enough password")
    response = client.generic("POST", CUES, b"x" * (3 << 20), content_type="multipart/form-data; boundary=zzz")
    assert response.status_code == 400 and response.json()["code"] == "file_too_large"


def test_a_chunked_body_without_a_length_is_refused(api, producer):
    response = api(producer).generic("POST", CUES, b"", HTTP_TRANSFER_ENCODING="chunked", CONTENT_LENGTH="")
    assert response.status_code == 411 and response.json()["code"] == "length_required"
