"""Operators' commands: keys, ledger checkpoint/verify/export, prompts erase."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from library.services import cue_ingest
from provenance import services
from provenance.models import LedgerEntry, PromptSecret, SigningKey
from tests.factories import midi_sketch
from tests.provenance.factories import clearance, triggers_off

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_keys_rotate_and_list():
    clearance(0)
    out = run("keys", "rotate")
    assert "valid from entry 2" in out
    listing = run("keys", "list").splitlines()
    assert len(listing) == 2 and "[0, 2)" in listing[0] and "[2, now)" in listing[1]


def test_ledger_checkpoint_appends_pending_records_and_prints_the_note(producer):
    cue_ingest(created_by=producer, title="Pending", midi=midi_sketch())
    out = run("ledger", "checkpoint")
    assert "appended 1 pending record(s)" in out and f"{services.origin()}\n1\n" in out


def test_ledger_verify_reports_success():
    for n in range(3):
        clearance(n)
    assert "ok: 3 entries and 0 checkpoint(s) verify" in run("ledger", "verify")


def test_ledger_verify_json_names_the_entry():
    for n in range(3):
        clearance(n)
    with triggers_off():
        LedgerEntry.objects.filter(index=1).delete()
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("ledger", "verify", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert (report["ok"], report["index"], report["code"]) == (False, 1, "entry_missing")


def test_ledger_export_writes_a_bundle_the_verifier_accepts(producer, tmp_path):
    cue = cue_ingest(created_by=producer, title="Export me", midi=midi_sketch())
    out = run("ledger", "export", "--cue", cue.code, "--out", str(tmp_path / "cue.json"))
    assert "1 record(s)" in out
    keys = [services.key_as_ledger_key(key).to_json() for key in SigningKey.objects.all()]
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "provenance.verify",
            str(tmp_path / "cue.json"),
            "--trusted-keys",
            str(tmp_path / "keys.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(CommandError, match="no cue"):
        run("ledger", "export", "--cue", "CUE-999999", "--out", str(tmp_path / "x.json"))


def test_erasing_a_prompt_destroys_it_and_the_ledger_still_verifies(producer):
    cue = cue_ingest(created_by=producer, title="Generated", midi=midi_sketch())
    commitment = services.prompt_commit(
        prompt="tense strings, 120 bpm", created_by=producer, reference=cue.provenance_reference
    )
    services.ledger_append(
        kind="generation",
        subjects=[(f"{cue.code}.mid", cue.midi_id)],
        predicate={
            "cue": {"id": str(cue.pk), "code": cue.code, "title": cue.title},
            "generator": {"name": "test", "version": "1", "weights_digest": "ab" * 32, "code_version": "0.1"},
            "prompt_commitment": commitment,
            "seed": "18446744073709551617",
            "parameters": {},
            "training_datasets": [],
        },
    )
    assert "erased 1 prompt(s)" in run("prompts", "erase", cue.code)
    secret = PromptSecret.objects.get()
    assert (secret.plaintext, secret.salt, secret.erased_at is not None) == ("", None, True)
    assert services.ledger_verify().ok
    assert "erased 0 prompt(s)" in run("prompts", "erase", str(cue.pk))
