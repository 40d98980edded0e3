"""`manage.py c2pa dev-ca` and `manage.py c2pa verify`."""

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile
from django.core.management import call_command
from django.core.management.base import CommandError

from provenance import content_credentials as cc

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def c2pa_dir(settings, tmp_path):
    """Point every CUELEDGER_C2PA_* setting into this test's own folder."""
    folder = tmp_path / "c2pa"
    settings.CUELEDGER_C2PA_DIR = folder
    settings.CUELEDGER_C2PA_CERT_CHAIN = folder / "signing-chain.pem"
    settings.CUELEDGER_C2PA_KEY = folder / "signing-key.pem"
    settings.CUELEDGER_C2PA_TRUST_ANCHORS = folder / "dev-ca.pem"
    return folder


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("c2pa", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def spec(media_type="audio/flac"):
    return cc.CredentialSpec(
        title="Command test cue",
        media_type=media_type,
        generated=True,
        model={"name": "cuegen", "version": "1", "digest": "sha256:" + "0" * 64},
        training_mining={"cawg.ai_generative_training": "notAllowed"},
        ledger={"origin": "ledger.cueledger.test", "index": 5, "envelope_sha256": "e" * 64},
    )


@pytest.fixture
def unsigned(tmp_path):
    path = tmp_path / "cue.flac"
    tone = np.sin(2 * np.pi * 440 * np.arange(44_100) / 44_100)[:, None].repeat(2, axis=1) * 0.3
    soundfile.write(path, tone, 44_100, subtype="PCM_16")
    return path


@pytest.fixture
def signed(c2pa_dir, settings, unsigned):
    run("dev-ca")
    identity = cc.identity_load(settings.CUELEDGER_C2PA_CERT_CHAIN, settings.CUELEDGER_C2PA_KEY)
    dest = unsigned.with_name("signed.flac")
    cc.embed(unsigned, dest, spec(), identity)
    return dest


def test_dev_ca_writes_the_three_files_with_a_private_key(c2pa_dir):
    out, _ = run("dev-ca")

    for name in ("dev-ca.pem", "signing-chain.pem", "signing-key.pem"):
        assert (c2pa_dir / name).is_file()
        assert str(c2pa_dir / name) in out
    assert stat.S_IMODE((c2pa_dir / "signing-key.pem").stat().st_mode) == 0o600
    assert "development only" in out


def test_dev_ca_refuses_to_overwrite_without_force(c2pa_dir):
    run("dev-ca")
    before = (c2pa_dir / "signing-key.pem").read_bytes()

    with pytest.raises(CommandError, match="--force"):
        run("dev-ca")
    assert (c2pa_dir / "signing-key.pem").read_bytes() == before

    run("dev-ca", "--force")
    assert (c2pa_dir / "signing-key.pem").read_bytes() != before


def test_verify_prints_a_valid_report_for_a_signed_file(signed):
    out, _ = run("verify", str(signed))

    assert "VALID (intact, trusted signer)" in out
    assert "c2pa.created (trainedAlgorithmicMedia)" in out
    assert "#5" in out and "e" * 64 in out
    assert "cawg.ai_generative_training = notAllowed" in out


def test_verify_fails_with_status_1_for_an_unsigned_file(c2pa_dir, unsigned):
    run("dev-ca")

    with pytest.raises(CommandError) as raised:
        run("verify", str(unsigned))
    assert raised.value.returncode == 1


def test_verify_reads_a_sidecar(c2pa_dir, settings, tmp_path):
    run("dev-ca")
    song = mido.MidiFile()
    song.tracks.append(mido.MidiTrack([mido.Message("note_on", note=64, time=0)]))
    midi = tmp_path / "cue.mid"
    song.save(midi)
    identity = cc.identity_load(settings.CUELEDGER_C2PA_CERT_CHAIN, settings.CUELEDGER_C2PA_KEY)
    store = tmp_path / "cue.mid.c2pa"
    store.write_bytes(cc.sidecar(midi, spec("audio/midi"), identity))

    out, _ = run("verify", str(midi), "--manifest", str(store))
    assert "VALID" in out and str(store) in out


def test_verify_without_trust_anchors_says_the_signer_is_untrusted(signed, settings):
    Path(settings.CUELEDGER_C2PA_TRUST_ANCHORS).unlink()
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError):
        call_command("c2pa", "verify", str(signed), stdout=out, stderr=err)
    assert "No trust anchors" in err.getvalue()
    assert "signingCredential.untrusted" in out.getvalue()


@pytest.mark.parametrize(("which", "status"), [("signed", 0), ("unsigned", 1)])
def test_verify_exit_status_from_the_shell(request, settings, which, status):
    """The exit status a script or a legal user's shell sees, through manage.py itself."""
    path = request.getfixturevalue("signed")
    if which == "unsigned":
        path = path.with_name("cue.flac")
    env = {**os.environ, "CUELEDGER_C2PA_TRUST_ANCHORS": str(settings.CUELEDGER_C2PA_TRUST_ANCHORS)}

    done = subprocess.run(
        [sys.executable, "manage.py", "c2pa", "verify", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == status, done.stdout + done.stderr
