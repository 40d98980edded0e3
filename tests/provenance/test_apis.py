"""The provenance API, and the legal team's walk: evidence bundle plus the API's keys, verified offline."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from provenance import services
from provenance.models import LedgerEntry
from tests.factories import midi_sketch, user_in_role
from tests.provenance.factories import clearance

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def upload(client, title: str = "Evidence", **sketch):
    """Upload a cue, then let the worker's part happen: its ingest record is appended from the outbox."""
    midi = SimpleUploadedFile("cue.mid", midi_sketch(**sketch), content_type="audio/midi")
    response = client.post("/api/v1/cues/", {"title": title, "midi": midi}, format="multipart")
    assert response.status_code == 201
    services.outbox_drain()
    return response.json()


def verify(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "provenance.verify", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_legal_verifies_a_cues_bundle_offline_and_a_flipped_byte_names_the_entry(api, producer, legal, tmp_path):
    cue = upload(api(producer))
    bundle = api(producer).get(f"/api/v1/cues/{cue['id']}/evidence-bundle/")
    assert bundle.status_code == 200 and bundle["Content-Type"] == "application/json"
    assert f"{cue['code']}.evidence.json" in bundle["Content-Disposition"]
    (tmp_path / "bundle.json").write_bytes(bundle.content)
    (tmp_path / "keys.json").write_text(json.dumps(api(legal).get("/api/v1/provenance/keys/").json()))

    ok = verify(tmp_path / "bundle.json", "--trusted-keys", tmp_path / "keys.json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    entry = LedgerEntry.objects.get(reference=f"cue:{cue['id']}")
    assert f"{entry.index}" in ok.stdout

    data = json.loads(bundle.content)
    envelope = data["entries"][0]["envelope"]
    middle = len(envelope) // 2
    data["entries"][0]["envelope"] = (
        envelope[:middle] + ("A" if envelope[middle] != "A" else "B") + envelope[middle + 1 :]
    )
    (tmp_path / "tampered.json").write_text(json.dumps(data))
    broken = verify(tmp_path / "tampered.json", "--trusted-keys", tmp_path / "keys.json", "--json", cwd=tmp_path)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert json.loads(broken.stdout)["error"]["index"] == entry.index


def test_the_checkpoint_is_signed_and_served(api, supervisor):
    clearance(0)
    body = api(supervisor).get("/api/v1/ledger/checkpoint/").json()
    assert body["size"] == 1 and body["origin"] == services.origin()
    assert body["note"].startswith(f"{services.origin()}\n1\n") and "\n\u2014 " in body["note"]


def test_entries_come_with_an_inclusion_proof_for_legal_only(api, legal, producer, supervisor):
    for n in range(3):
        clearance(n)
    body = api(legal).get("/api/v1/ledger/entries/1/").json()
    assert body["entry"]["index"] == 1 and body["entry"]["kind"] == "clearance"
    assert body["entry"]["predicate"]["reason"] == "decision 1"
    assert len(body["entry"]["inclusion_proof"]) == 2 and body["checkpoint"]["size"] == 3
    for user in (producer, supervisor):
        assert api(user).get("/api/v1/ledger/entries/1/").json()["code"] == "permission_denied"
    assert api(legal).get("/api/v1/ledger/entries/99/").status_code == 404


def test_consistency_proofs_and_their_bad_ranges(api, legal):
    for n in range(5):
        clearance(n)
    body = api(legal).get("/api/v1/ledger/consistency/", {"first": 2, "second": 5}).json()
    assert (body["first"], body["second"], len(body["proof"])) == (2, 5, 2)
    for query in ({"first": 0, "second": 5}, {"first": 3, "second": 9}, {"first": "x", "second": 2}, {}):
        response = api(legal).get("/api/v1/ledger/consistency/", query)
        assert response.status_code == 400 and response.json()["code"] in ("proof_range_invalid", "validation_error")


def test_keys_are_listed_with_windows_and_note_verifier_keys(api, supervisor):
    clearance(0)
    services.key_rotate()
    results = api(supervisor).get("/api/v1/provenance/keys/").json()["results"]
    assert [(k["valid_from_index"], k["valid_until_index"]) for k in results] == [(0, 2), (2, None)]
    assert all(k["note_verifier_key"].startswith(f"{services.origin()}+") for k in results)


def test_schemas_are_published(api, supervisor):
    listing = api(supervisor).get("/api/v1/provenance/schemas/").json()
    kinds = {item["kind"] for item in listing["results"]}
    assert kinds == {"ingest", "generation", "similarity", "clearance", "licence", "key"}
    schema = api(supervisor).get("/api/v1/provenance/schemas/generation/").json()
    assert "prompt_commitment" in schema["properties"] and schema["$schema"].endswith("2020-12/schema")
    assert api(supervisor).get("/api/v1/provenance/schemas/nonsense/").status_code == 404


def test_a_cues_provenance_is_for_legal_admin_and_its_producer(api, producer, legal, supervisor):
    cue = upload(api(producer))
    records = api(producer).get(f"/api/v1/cues/{cue['id']}/provenance/").json()["records"]
    assert [r["kind"] for r in records] == ["ingest"]
    assert records[0]["predicate"]["cue"]["code"] == cue["code"]
    assert records[0]["predicate"]["uploaded_by"] == producer.username
    assert api(legal).get(f"/api/v1/cues/{cue['id']}/provenance/").status_code == 200
    assert api(user_in_role("producer")).get(f"/api/v1/cues/{cue['id']}/provenance/").status_code == 404
    assert api(supervisor).get(f"/api/v1/cues/{cue['id']}/evidence-bundle/").status_code == 404  # not ready


def test_a_bad_since_is_refused(api, producer):
    cue = upload(api(producer))
    for since in ("x", "99"):
        response = api(producer).get(f"/api/v1/cues/{cue['id']}/evidence-bundle/", {"since": since})
        assert response.status_code == 400


def test_a_prompt_is_readable_by_legal_and_its_creator_only_and_erasure_shows(api, producer, legal, admin_user):
    cue = upload(api(producer))
    commitment = services.prompt_commit(
        prompt="tense strings, 120 bpm", created_by=producer, reference=f"cue:{cue['id']}"
    )
    url = f"/api/v1/cues/{cue['id']}/prompt/"
    for user in (producer, legal, admin_user):
        [prompt] = api(user).get(url).json()["results"]
        assert (prompt["prompt"], prompt["commitment"]) == ("tense strings, 120 bpm", commitment["value"])
        salt = bytes.fromhex(prompt["salt"])
        assert hashlib.sha256(salt + b"tense strings, 120 bpm").hexdigest() == commitment["value"]
    assert api(user_in_role("producer")).get(url).status_code == 404
    services.prompt_erase(reference=f"cue:{cue['id']}")
    [erased] = api(legal).get(url).json()["results"]
    assert (erased["prompt"], erased["salt"], erased["commitment"]) == (None, None, commitment["value"])


def test_two_cues_sharing_a_midi_file_keep_their_own_records(api, producer):
    """Artifacts are stored once per digest, so two uploads of the same bytes share a file; each cue's provenance,
    bundle and prompts must still be its own."""
    other = user_in_role("producer")
    mine = upload(api(producer), title="Mine", seed=5)
    theirs = upload(api(other), title="Theirs", seed=5)
    assert mine["artifacts"]["midi"]["sha256"] == theirs["artifacts"]["midi"]["sha256"]
    records = api(other).get(f"/api/v1/cues/{theirs['id']}/provenance/").json()["records"]
    assert [r["predicate"]["cue"]["title"] for r in records] == ["Theirs"]
    assert [r["predicate"]["uploaded_by"] for r in records] == [other.username]
    bundle = json.loads(api(other).get(f"/api/v1/cues/{theirs['id']}/evidence-bundle/").content)
    assert len(bundle["entries"]) == 1
    assert (
        services.origin_record(f"cue:{theirs['id']}")["index"] != services.origin_record(f"cue:{mine['id']}")["index"]
    )
