"""C2SP signed-note (Ed25519) and tlog-checkpoint, against golang.org/x/mod/sumdb/note vectors and the C2SP specs."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.ledger import (
    Checkpoint,
    MalformedError,
    VerificationError,
    b64,
    note_key_id,
    open_note,
    parse_vkey,
    sign_note,
    unb64,
    vkey,
)

from .helpers import load_vector, seeded_key

V = load_vector("signed_note.json")
GO = V["go_sumdb_note"]


def peter() -> tuple[str, bytes, bytes]:
    return parse_vkey(GO["vkey"])


def peter_private_key() -> Ed25519PrivateKey:
    # skey = PRIVATE+KEY+<name>+<id>+base64(0x01 || seed)
    raw = unb64(GO["skey"].split("+", 4)[4])
    assert raw[0] == 0x01
    return Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_parse_vkey_and_key_id():
    name, key_id, public_key = peter()
    assert name == GO["name"]
    assert key_id.hex() == GO["key_id_hex"]
    assert note_key_id(name, public_key) == key_id
    # The key ID is SHA-256(name || 0x0A || 0x01 || key)[:4], spelled out.
    assert hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4] == key_id
    assert vkey(name, public_key) == GO["vkey"]
    assert peter_private_key().public_key().public_bytes_raw() == public_key


def test_every_mangled_vkey_is_refused():
    """sumdb/note TestNewVerifier: every proper substring and every single-character change fails."""
    text = GO["vkey"]
    for i in range(len(text) + 1):
        for j in range(i + 1, len(text) + 1):
            if (i, j) != (0, len(text)):
                with pytest.raises(MalformedError):
                    parse_vkey(text[i:j])
    for i in range(len(text)):
        mangled = text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :]
        with pytest.raises(MalformedError):
            parse_vkey(mangled)
    for bad in GO["bad_vkeys"]:
        with pytest.raises(MalformedError) as raised:
            parse_vkey(bad)
        assert raised.value.code == "key_malformed"


def test_sign_note_reproduces_the_published_signature():
    """Ed25519 is deterministic: the Go package's signed note, byte for byte (sumdb/note TestSign)."""
    assert sign_note(GO["text"], GO["name"], peter_private_key()) == GO["signed_note"]


def test_open_note_with_one_and_two_known_keys():
    """sumdb/note TestOpen: a known key's signature verifies, an unknown key's is ignored."""
    name, key_id, public_key = peter()
    enoch = parse_vkey(GO["enoch_vkey"])
    note = GO["signed_note"] + GO["enoch_signature_line"]

    body, verified = open_note(note, {(name, key_id): public_key})
    assert body == GO["text"]
    assert verified == [(name, key_id)]

    body, verified = open_note(note, {(name, key_id): public_key, (enoch[0], enoch[1]): enoch[2]})
    assert verified == [(name, key_id), (enoch[0], enoch[1])]

    with pytest.raises(VerificationError) as raised:
        open_note(note, {})
    assert raised.value.code == "checkpoint_signature_invalid"

    # A duplicated signature line counts once.
    _, verified = open_note(GO["signed_note"] + GO["signature_line"], {(name, key_id): public_key})
    assert verified == [(name, key_id)]


def test_same_name_or_same_id_alone_is_an_unknown_key():
    """signed-note: ignore signatures from unknown keys even if they share a name or ID (but not both)."""
    name, key_id, public_key = peter()
    other = seeded_key("other").public_key().public_bytes_raw()
    for keys in ({(name, b"\0\0\0\0"): other}, {("CarmenSandiego", key_id): other}):
        with pytest.raises(VerificationError):
            open_note(GO["signed_note"], keys)


def test_a_known_key_with_a_bad_signature_rejects_the_note():
    name, key_id, public_key = peter()
    line = GO["signature_line"]
    broken = GO["text"] + "\n" + line[:60] + "ABCD" + line[60:]
    with pytest.raises(VerificationError) as raised:
        open_note(broken, {(name, key_id): public_key})
    assert raised.value.code == "checkpoint_signature_invalid"
    # The right (name, id) with another key: the signature cannot verify.
    wrong = seeded_key("impostor").public_key().public_bytes_raw()
    with pytest.raises(VerificationError):
        open_note(GO["signed_note"], {(name, key_id): wrong})
    # A changed text.
    with pytest.raises(VerificationError):
        open_note(GO["signed_note"].replace("problem,", "problem;"), {(name, key_id): public_key})


@pytest.mark.parametrize("note", GO["bad_notes"])
def test_malformed_notes_from_sumdb(note):
    name, key_id, public_key = peter()
    with pytest.raises(MalformedError) as raised:
        open_note(note, {(name, key_id): public_key})
    assert raised.value.code == "note_malformed"


def test_too_many_signatures():
    name, key_id, public_key = peter()
    with pytest.raises(MalformedError):
        open_note(GO["text"] + "\n" + GO["signature_line"] * 101, {(name, key_id): public_key})


def test_c2sp_example_note_parses_and_is_not_verified_by_a_stranger():
    example = V["c2sp"]["signed_note"]
    # The text holds an empty line; the signatures start after the *last* one.
    name = example["key_name"]
    key_id = unb64(example["note"].rsplit(" ", 1)[1].strip())[:4]
    stranger = seeded_key("stranger").public_key().public_bytes_raw()
    with pytest.raises(VerificationError) as raised:
        open_note(example["note"], {(name, key_id): stranger})
    assert raised.value.code == "checkpoint_signature_invalid"
    assert "does not verify" in raised.value.detail
    # With our own key over the same text, the split comes back exactly.
    mine = seeded_key("mine")
    signed = sign_note(example["text"], name, mine)
    body, _ = open_note(
        signed, {(name, note_key_id(name, mine.public_key().public_bytes_raw())): mine.public_key().public_bytes_raw()}
    )
    assert body == example["text"]


def test_c2sp_example_checkpoint_parses():
    example = V["c2sp"]["checkpoint"]
    body = example["note"].split("\n\n")[0] + "\n"
    checkpoint = Checkpoint.parse(body)
    assert checkpoint.origin == example["origin"]
    assert checkpoint.size == example["size"]
    assert b64(checkpoint.root_hash) == example["root_hash_b64"]
    assert checkpoint.extensions == ()
    assert checkpoint.body() == body


def test_checkpoint_round_trip_with_extensions():
    checkpoint = Checkpoint("cueledger.local/ledger", 42, bytes(range(32)), ("ext one", "ext two"))
    body = checkpoint.body()
    assert body == f"cueledger.local/ledger\n42\n{b64(bytes(range(32)))}\next one\next two\n"
    assert Checkpoint.parse(body) == checkpoint
    key = seeded_key("checkpoint")
    public_key = key.public_key().public_bytes_raw()
    note = sign_note(body, checkpoint.origin, key)
    opened, verified = open_note(note, {(checkpoint.origin, note_key_id(checkpoint.origin, public_key)): public_key})
    assert Checkpoint.parse(opened) == checkpoint


ROOT = b64(bytes(32))


@pytest.mark.parametrize(
    "body",
    [
        "",
        "origin\n1\n",
        f"origin\n1\n{ROOT}",  # no final newline
        f"\n1\n{ROOT}\n",  # empty origin
        f"origin\n01\n{ROOT}\n",  # leading zero
        f"origin\n+1\n{ROOT}\n",
        f"origin\n 1\n{ROOT}\n",
        f"origin\n1_0\n{ROOT}\n",
        f"origin\n\u0661\n{ROOT}\n",  # an Arabic-Indic digit, which int() accepts
        f"origin\n-1\n{ROOT}\n",
        f"origin\n18446744073709551616\n{ROOT}\n",  # 2**64
        "origin\n1\nAAAA\n",  # 3-byte root
        f"origin\n1\n{ROOT[:-1]}\n",
        f"origin\n1\n{ROOT}\n\n",  # empty extension line
        f"origin\n1\n{ROOT}\next\n\n",
        f"origin\r\n1\n{ROOT}\n",
    ],
)
def test_malformed_checkpoints(body):
    with pytest.raises(MalformedError) as raised:
        Checkpoint.parse(body)
    assert raised.value.code == "checkpoint_malformed"


def test_checkpoint_size_limits():
    assert Checkpoint.parse(f"o\n0\n{ROOT}\n").size == 0
    assert Checkpoint.parse(f"o\n18446744073709551615\n{ROOT}\n").size == 2**64 - 1
    with pytest.raises(MalformedError):
        Checkpoint("o", -1, bytes(32))
    with pytest.raises(MalformedError):
        Checkpoint("o", 1, bytes(31))
    with pytest.raises(MalformedError):
        Checkpoint("o\nx", 1, bytes(32))


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\u00a0b", "a\tb"])
def test_bad_key_names(name):
    with pytest.raises(MalformedError):
        sign_note("text\n", name, seeded_key("k"))
    with pytest.raises(MalformedError):
        vkey(name, bytes(32))


def test_sign_note_refuses_bad_bodies():
    for body in ["", "no newline", "bell\x07\n"]:
        with pytest.raises(MalformedError):
            sign_note(body, "name", seeded_key("k"))
