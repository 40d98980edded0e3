"""Similarity checks end to end on PostgreSQL, a real broker and real workers: the issue's walk-through."""

import io

from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from PIL import Image

from library.models import Cue, SimilarityAlert, SimilarityReport
from tests.factories import client_for, tune, tune_midi, user_in_role
from tests.integration.conftest import wait_until


def upload(client, title: str, midi: bytes) -> str:
    response = client.post(
        "/api/v1/cues/", {"title": title, "midi": SimpleUploadedFile(f"{title}.mid", midi)}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def checked(cue_id, worker, *, after: int = 0):
    def report():
        reports = SimilarityReport.objects.filter(cue_id=cue_id).order_by("created_at")
        return reports[after] if reports.count() > after else None

    return wait_until(
        report, timeout=120, what=f"similarity report #{after + 1} of cue {cue_id}", logs=[worker.log_path]
    )


def test_a_quote_of_eight_bars_transposed_and_slowed_is_flagged_and_an_unrelated_cue_passes(
    start_worker, private_files, tmp_path
):
    worker = start_worker()
    legal, producer = user_in_role("legal"), user_in_role("producer")
    folder = tmp_path / "references"
    folder.mkdir()
    for seed in range(1, 7):
        (folder / f"theme-{seed}.mid").write_bytes(tune_midi(tune(seed), tempo_bpm=112))
    (folder / "metadata.csv").write_text("file,title,composers\ntheme-4.mid,The Protected Theme,A. Composer\n")
    progress = io.StringIO()
    call_command("references", "import", str(folder), "--user", legal.username, stdout=io.StringIO(), stderr=progress)
    assert progress.getvalue().splitlines()[-1].startswith("[" + "#" * 30 + "] 6/6")

    quoting = upload(
        client_for(producer),
        "Quoting",
        tune_midi(tune(900), tune(4), tune(901), tempo_bpm=90, transpose=-2, program=71),
    )
    unrelated = upload(client_for(producer), "Unrelated", tune_midi(tune(902), tune(903), tempo_bpm=90))

    flagged = checked(quoting, worker)
    assert flagged.verdict == "flag"
    symbolic = [m for m in flagged.matches if m["detector"] == "symbolic"]
    assert [m["reference"]["title"] for m in symbolic] == ["The Protected Theme"]
    evidence = symbolic[0]["evidence"]
    assert evidence["transposition"] % 12 == 10
    # The quote fills bars 9-16 of the cue, played at 90 BPM where the reference goes at 112.
    assert 8.5 <= evidence["cue_span"]["start_bar"] < 10 and 15.5 <= evidence["cue_span"]["end_bar"] <= 17.5
    assert abs(evidence["tempo_ratio"] - 90 / 112) < 0.05
    assert flagged.corpus_count == 6
    assert checked(unrelated, worker).verdict == "pass"

    body = client_for(producer).get(f"/api/v1/cues/{quoting}/similarity/").json()
    assert body["verdict"] == "flag"
    picture = client_for(producer).get(body["latest"]["matches"][0]["image_url"])
    assert Image.open(io.BytesIO(picture.content)).format == "PNG"
    assert Cue.objects.get(pk=quoting).status == Cue.Status.READY


def test_adding_a_reference_re_checks_ready_cues_and_alerts_legal_to_a_new_match(start_worker, private_files):
    worker = start_worker()
    legal, producer = user_in_role("legal"), user_in_role("producer")
    cue_id = upload(client_for(producer), "Innocent until", tune_midi(tune(910), tune(11), tempo_bpm=96))
    assert checked(cue_id, worker).verdict == "pass"

    response = client_for(legal).post(
        "/api/v1/reference-works/",
        {"title": "Registered later", "midi": SimpleUploadedFile("later.mid", tune_midi(tune(11), tempo_bpm=120))},
        format="multipart",
    )
    assert response.status_code == 201

    again = checked(cue_id, worker, after=1)
    assert again.trigger == "references" and again.verdict == "flag"
    alert = SimilarityAlert.objects.get(cue_id=cue_id)
    assert [r.title for r in alert.references.all()] == ["Registered later"]
    listed = client_for(legal).get("/api/v1/similarity/alerts/").json()["results"]
    assert [a["cue"]["id"] for a in listed] == [cue_id]
