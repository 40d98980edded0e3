"""`python -m provenance.verify`, run as a user would: a subprocess with files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provenance.ledger import b64, dump_bundle

from .ledger.helpers import ORIGIN, PREDICATE, Ledger, seeded_key

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, "-m", "provenance.verify", *map(str, args)],
        cwd=ROOT,
        env=env,
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def ledger() -> Ledger:
    return Ledger.with_rotation(entries=5)


@pytest.fixture
def files(tmp_path, ledger):
    def write(name: str, data: bytes | str) -> Path:
        path = tmp_path / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    return write


def test_verified_bundle(ledger, files):
    bundle = files("bundle.json", dump_bundle(ledger.bundle(since=[3])))
    keys = files("keys.json", json.dumps({"results": [k.to_json() for k in ledger.ledger_keys], "next": None}))
    previous = files("previous.txt", ledger.checkpoint(3).replace("\n", "\r\n"))  # saved by a Windows editor
    result = run(bundle, "--trusted-keys", keys, "--previous-checkpoint", previous)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("VERIFIED")
    assert ORIGIN in out and "5 entries" in out and b64(ledger.tree.root()) in out
    assert "previous checkpoint of size 3" in out
    for index in range(5):
        assert f"entry {index}: {PREDICATE}" in out
    assert ledger.keys[0][1].key_id in out
    assert "sha256:" in out and "cue-4.wav" in out
    assert "Warnings" not in out


def test_own_keys_warning(ledger, files):
    result = run(files("bundle.json", dump_bundle(ledger.bundle())))
    assert result.returncode == 0
    assert "not independently trusted" in result.stdout


def test_json_report_on_success(ledger, files):
    keys = files("keys.json", json.dumps([k.to_json() for k in ledger.ledger_keys]))
    result = run(files("bundle.json", dump_bundle(ledger.bundle([1, 3]))), "--trusted-keys", keys, "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["error"] is None
    assert report["checkpoint"] == {
        "origin": ORIGIN,
        "tree_size": 5,
        "root_hash": b64(ledger.tree.root()),
        "key_id": ledger.keys[0][1].key_id,
    }
    assert [entry["index"] for entry in report["entries"]] == [1, 3]
    assert report["entries"][0]["predicate_type"] == PREDICATE
    assert report["warnings"] == []


def test_stdin(ledger):
    result = run("-", stdin=dump_bundle(ledger.bundle()))
    assert result.returncode == 0, result.stderr


def test_failed_check_exits_1_and_names_the_entry(ledger, files):
    bundle = ledger.bundle()
    bundle["entries"][1]["envelope"], bundle["entries"][2]["envelope"] = (
        bundle["entries"][2]["envelope"],
        bundle["entries"][1]["envelope"],
    )
    path = files("bundle.json", dump_bundle(bundle))
    result = run(path)
    assert result.returncode == 1
    assert "VERIFICATION FAILED" in result.stderr
    assert "entry 1" in result.stderr and "inclusion_proof_invalid" in result.stderr
    result = run(path, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["error"]["code"] == "inclusion_proof_invalid" and report["error"]["index"] == 1
    assert report["checkpoint"] is None and report["entries"] == []


def test_unknown_signer_exits_1(ledger, files):
    ledger.append(b'{"not": "checked before the key"}', seeded_key("rogue"))
    keys = files("keys.json", json.dumps({"keys": [k.to_json() for k in ledger.ledger_keys]}))
    result = run(files("bundle.json", dump_bundle(ledger.bundle())), "--trusted-keys", keys, "--json")
    assert result.returncode == 1
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["index"]) == ("unknown_key", 5)


@pytest.mark.parametrize(
    ("make_args", "code"),
    [
        (lambda files, ledger: [files("bundle.json", b"{not json")], "bundle_malformed"),
        (lambda files, ledger: [files("bundle.json", b'{"format": 1}')], "bundle_malformed"),
        (lambda files, ledger: [files("dir", b"").parent / "missing.json"], "file_unreadable"),
        (lambda files, ledger: [], "usage"),
        (lambda files, ledger: [files("b.json", dump_bundle(ledger.bundle())), "--frobnicate"], "usage"),
        (
            lambda files, ledger: [files("b.json", dump_bundle(ledger.bundle())), "--trusted-keys", files("k", "[1]")],
            "key_malformed",
        ),
        (
            lambda files, ledger: [
                files("b.json", dump_bundle(ledger.bundle())),
                "--previous-checkpoint",
                files("p.txt", ledger.checkpoint(2)),
            ],
            "consistency_proof_missing",
        ),
        (
            lambda files, ledger: [
                files("b.json", dump_bundle(ledger.bundle())),
                "--previous-checkpoint",
                files("p.txt", "not a note"),
            ],
            "note_malformed",
        ),
    ],
)
def test_unusable_input_exits_2(ledger, files, make_args, code):
    args = make_args(files, ledger)
    result = run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert code in result.stderr
    result = run(*args, "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["error"]["code"] == code


def test_consistency_hint_is_shown(ledger, files):
    bundle = files("b.json", dump_bundle(ledger.bundle()))
    result = run(bundle, "--previous-checkpoint", files("p.txt", ledger.checkpoint(2)))
    assert "--since 2" in result.stderr and "first=2&second=5" in result.stderr


def test_help():
    result = run("--help")
    assert result.returncode == 0 and "Exit status" in result.stdout


def test_verifier_never_imports_django(ledger, files):
    bundle = files("bundle.json", dump_bundle(ledger.bundle()))
    code = (
        "import sys\n"
        "import provenance.verify as verify\n"
        f"status = verify.main([{str(bundle)!r}, '--json'])\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert status == 0, status\n"
        "assert not loaded, loaded\n"
        "print('clean')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("clean")


def test_control_characters_from_the_bundle_are_shown_escaped_not_obeyed(ledger, files):
    """A field that would switch a terminal to hidden text must not hide the untrusted-keys warning."""
    bundle = ledger.bundle()
    bundle["x\x1b[8m"] = "hidden"
    bundle["subject"] = {"cue": "Opening\x1b[8m titles\ud800"}
    result = run(files("bundle.json", json.dumps(bundle, ensure_ascii=True)))
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\\x1b[8m" in result.stdout
    assert result.stdout.startswith("VERIFIED AGAINST THE BUNDLE'S OWN KEYS ONLY")


def test_a_checkpoint_older_than_the_newest_trusted_key_is_refused(files):
    """After a rotation at entry 3, a retired key could still sign checkpoints up to size 3. Should it leak, a
    made-up history ending before the rotation would otherwise verify against the trusted keys."""
    ledger = Ledger.with_rotation(entries=5, rotate_at=3)
    keys = files("keys.json", json.dumps([key.to_json() for key in ledger.ledger_keys]))
    stale = files("stale.json", dump_bundle(ledger.bundle(indexes=[0, 1], size=2)))
    result = run(stale, "--trusted-keys", keys, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["error"]["code"] == "checkpoint_predates_rotation"
    assert run(files("fresh.json", dump_bundle(ledger.bundle())), "--trusted-keys", keys).returncode == 0
