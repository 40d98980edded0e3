"""Content Credentials (C2PA) for rendered cues: signing identities, embedding, sidecars and offline reading.

Plain functions and dataclasses, no Django, so that a script, a Celery task and a management command share them.
Everything runs offline: signing passes no time-stamp authority URL, and reading and signing switch off remote
manifest fetching and OCSP (c2pa's defaults would fetch a manifest a file points to).

References (C2PA Technical Specification 2.x unless noted):

* Certificate profile of a claim signer: section 14.5.1 "Certificate Profiles"; trust lists and accepted EKUs:
  section 14.4.1 "C2PA Signers".
* Assertions: "Actions" (c2pa.actions.v2, with ``digitalSourceType`` from the IPTC vocabulary), "Ingredient"
  (c2pa.ingredient.v3, ``relationship`` and ``dataTypes``), "Labels" (entity-specific labels in reverse-domain form).
* Content binding: "Data Hash" (c2pa.hash.data), the hard binding c2pa-python writes for FLAC and for sidecars.
* CAWG Training and Data Mining Assertion 1.1: label ``cawg.training-mining``, ``entries`` map of ``{"use": ...}``.
"""

from __future__ import annotations

import datetime as dt
import json
import mimetypes
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import c2pa
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

# --- Vocabulary ------------------------------------------------------------------------------------------------------

#: IPTC digital source type for media made by a model trained on sampled content (C2PA "Actions", digitalSourceType).
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"

ACTIONS_LABEL = "c2pa.actions.v2"
TRAINING_MINING_LABEL = "cawg.training-mining"
#: Entity-specific label: reverse domain of the claim generator's owner (C2PA "Labels").
LEDGER_LABEL = "com.cueledger.ledger"

#: The four entries CAWG Training and Data Mining 1.1 defines; other ``cawg.`` keys are reserved.
CAWG_TRAINING_MINING_KEYS = frozenset(
    {"cawg.data_mining", "cawg.ai_inference", "cawg.ai_generative_training", "cawg.ai_training"}
)
TRAINING_MINING_USES = frozenset({"allowed", "notAllowed", "constrained"})

#: c2pa-kp-claimSigning, the EKU C2PA 2.x defines for claim signers (section 14.4.1).
EKU_C2PA_CLAIM_SIGNING = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
#: id-kp-documentSigning (RFC 9336), accepted by C2PA validators configured for it.
EKU_DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
#: The leaf carries all three: c2pa-rs 0.91 accepts only emailProtection unless told otherwise (trust_config), and the
#: specification allows emailProtection/documentSigning next to claimSigning for older validators.
CLAIM_SIGNER_EKUS = (EKU_C2PA_CLAIM_SIGNING, EKU_DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION)

DEV_CA_FILENAME = "dev-ca.pem"
SIGNING_CHAIN_FILENAME = "signing-chain.pem"
SIGNING_KEY_FILENAME = "signing-key.pem"

_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$")
_SHA256_HEX_RE = re.compile(r"^[0-9a-f]{64}$")
_MANIFEST_STORE_TYPES = frozenset({"application/c2pa", "application/x-c2pa-manifest-store"})
# Extensions mimetypes does not know on every platform.
_AUDIO_TYPES = {
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".mid": "audio/midi",
    ".midi": "audio/midi",
}


class CredentialsError(Exception):
    """A failure the caller can act on; ``code`` is stable, ``detail`` is for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# --- Signing identity ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningIdentity:
    cert_chain_pem: bytes  # leaf first, then intermediates; the trust anchor itself is left out
    private_key_pem: bytes  # PKCS#8, unencrypted
    algorithm: str  # c2pa signing algorithm name: es256, es384, es512, ps256, ed25519


@dataclass(frozen=True)
class DevCaFiles:
    ca_cert: Path
    signing_chain: Path
    signing_key: Path


def identity_load(chain: Path, key: Path) -> SigningIdentity:
    """Load a claim signer's chain and key, checking that the key belongs to the leaf (C2PA section 14.5.1)."""
    chain_pem = _read_file(chain, "chain")
    key_pem = _read_file(key, "key")
    certificates = _parse_certificates(chain_pem, code="chain_invalid", what=str(chain))
    _check_claim_signer(certificates[0], chain)
    private_key = _parse_private_key(key_pem, key)
    if _public_der(certificates[0].public_key()) != _public_der(private_key.public_key()):
        raise CredentialsError("key_mismatch", f"{key} is not the private key of the first certificate in {chain}")
    return SigningIdentity(
        cert_chain_pem=b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates),
        # Re-serialised as PKCS#8 because that is the one PEM flavour every c2pa signer backend reads.
        private_key_pem=private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        algorithm=_algorithm_for(private_key),
    )


def _read_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CredentialsError(f"{what}_missing", f"{path} does not exist") from None
    except OSError as exc:
        raise CredentialsError(f"{what}_unreadable", f"{path}: {exc.strerror or exc}") from None


def _parse_certificates(pem: bytes, *, code: str, what: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CredentialsError(code, f"{what} holds no readable PEM certificate ({exc})") from None
    if not certificates:
        raise CredentialsError(code, f"{what} holds no PEM certificate")
    return certificates


def _check_claim_signer(leaf: x509.Certificate, chain: Path) -> None:
    """Refuse, with a reason, a leaf that C2PA validators would reject (section 14.5.1), before anything is signed."""
    extensions = {ext.oid: ext.value for ext in leaf.extensions}
    constraints = extensions.get(x509.OID_BASIC_CONSTRAINTS)
    if leaf.issuer == leaf.subject:
        raise CredentialsError(
            "leaf_self_signed", f"{chain}: a self-signed claim signer is not trusted; issue it from a CA (c2pa dev-ca)"
        )
    if constraints is not None and constraints.ca:
        raise CredentialsError("leaf_profile", f"{chain}: the first certificate is a CA, not a claim signer")
    usage = extensions.get(x509.OID_KEY_USAGE)
    if usage is None or not usage.digital_signature:
        raise CredentialsError("leaf_profile", f"{chain}: the claim signer lacks the digitalSignature key usage")
    ekus = extensions.get(x509.OID_EXTENDED_KEY_USAGE)
    if not ekus or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in ekus:
        raise CredentialsError("leaf_profile", f"{chain}: the claim signer needs explicit extended key usages")
    now = dt.datetime.now(tz=dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CredentialsError(
            "leaf_expired",
            f"{chain}: the claim signer is valid {leaf.not_valid_before_utc:%Y-%m-%d}"
            f" to {leaf.not_valid_after_utc:%Y-%m-%d} only",
        )


def _parse_private_key(pem: bytes, path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise CredentialsError(
            "key_encrypted", f"{path} is password-protected; the signer needs it unencrypted"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CredentialsError("key_invalid", f"{path} holds no readable PEM private key ({exc})") from None


def _public_der(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _algorithm_for(private_key: Any) -> str:
    """The COSE algorithm C2PA allows for this key type (C2PA "Digital Signatures", allowed algorithms)."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        by_curve = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if private_key.curve.name in by_curve:
            return by_curve[private_key.curve.name]
    if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= 2048:
        return "ps256"  # C2PA allows RSASSA-PSS only, never PKCS#1 v1.5, for claim signatures
    raise CredentialsError("algorithm_unsupported", f"no C2PA signing algorithm for a {type(private_key).__name__}")


# --- Development CA --------------------------------------------------------------------------------------------------


def dev_ca_create(out_dir: Path, *, organisation: str = "Cueledger development", overwrite: bool = False) -> DevCaFiles:
    """Write a development root CA and a claim-signing leaf it issued into ``out_dir``.

    C2PA validators reject a self-signed claim signer (section 14.5.1), so the leaf is issued by a separate root that a
    reader configures as its trust anchor. The root's private key is not kept: nothing else can ever be issued from it.
    """
    out_dir = Path(out_dir)
    files = DevCaFiles(
        ca_cert=out_dir / DEV_CA_FILENAME,
        signing_chain=out_dir / SIGNING_CHAIN_FILENAME,
        signing_key=out_dir / SIGNING_KEY_FILENAME,
    )
    return dev_ca_write(files, organisation=organisation, overwrite=overwrite)


def dev_ca_write(
    files: DevCaFiles, *, organisation: str = "Cueledger development", overwrite: bool = False
) -> DevCaFiles:
    """Like :func:`dev_ca_create`, to explicit paths (the management command uses the configured ones)."""
    existing = [path for path in (files.ca_cert, files.signing_chain, files.signing_key) if path.exists()]
    if existing and not overwrite:
        names = ", ".join(str(path) for path in existing)
        raise CredentialsError("exists", f"refusing to overwrite {names}")
    now = dt.datetime.now(tz=dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue_root(ca_key, organisation, now)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = _issue_claim_signer(leaf_key, ca_key, ca_cert, organisation, now)
    pem = serialization.Encoding.PEM
    _write_atomically(files.ca_cert, ca_cert.public_bytes(pem), mode=0o644)
    # Leaf only: the chain carries intermediates, never the trust anchor (c2patool's documented chain layout).
    _write_atomically(files.signing_chain, leaf_cert.public_bytes(pem), mode=0o644)
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_atomically(files.signing_key, key_pem, mode=0o600)
    return files


def _name(organisation: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issue_root(key: ec.EllipticCurvePrivateKey, organisation: str, now: dt.datetime) -> x509.Certificate:
    """A self-signed root: CA with path length 0 (it issues leaves only), keyCertSign, and a subject key id."""
    subject = _name(organisation, f"{organisation} CA")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # tolerate clock skew between machines
        .not_valid_after(now + dt.timedelta(days=5 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_claim_signer(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    organisation: str,
    now: dt.datetime,
) -> x509.Certificate:
    """The leaf per C2PA 14.5.1: v3, not a CA, critical keyUsage with digitalSignature only, a non-empty EKU without
    anyExtendedKeyUsage, and an authority key identifier (required of every certificate that is not self-signed)."""
    return (
        x509.CertificateBuilder()
        .subject_name(_name(organisation, f"{organisation} claim signer"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        # Without a time-stamp, validators check the leaf against the current time, so its lifetime is the lifetime of
        # every signature it makes.
        .not_valid_after(min(now + dt.timedelta(days=2 * 365), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(CLAIM_SIGNER_EKUS)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write through a same-directory temporary file created with ``mode``, so a key is never world-readable, even
    briefly, and a crash never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; set the final mode before any byte lands
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- What a manifest says --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialSpec:
    title: str
    media_type: str  # "audio/flac", "audio/ogg", "audio/midi", ...
    generated: bool  # True: made by a generative model here
    model: dict | None  # {"name", "version", "digest"} of the generator (an ingredient), generated cues only
    training_mining: dict[str, str]  # entry key -> "allowed" | "notAllowed" | "constrained"
    ledger: dict  # {"origin": str, "index": int, "envelope_sha256": hex}
    claim_generator: str = "Cueledger/0.1"

    def __post_init__(self) -> None:
        # Media types are case-insensitive; c2pa's format table is lower case.
        object.__setattr__(self, "media_type", self.media_type.strip().lower())
        _check_spec(self)


def _check_spec(spec: CredentialSpec) -> None:
    if not spec.title or not isinstance(spec.title, str):
        raise CredentialsError("spec_invalid", "title must be a non-empty string")
    if "/" not in spec.media_type:
        raise CredentialsError("spec_invalid", f"media_type {spec.media_type!r} is not a media type")
    _check_model(spec.model, generated=spec.generated)
    _check_training_mining(spec.training_mining)
    _check_ledger(spec.ledger)


def _check_model(model: dict | None, *, generated: bool) -> None:
    if model is None:
        return
    if not generated:
        raise CredentialsError("spec_invalid", "an imported cue has no generator model to record")
    missing = [key for key in ("name", "version", "digest") if not isinstance(model.get(key), str) or not model[key]]
    if missing:
        raise CredentialsError("spec_invalid", f"model lacks {', '.join(missing)}")


def _check_training_mining(entries: dict[str, str]) -> None:
    for key, use in entries.items():
        if not _LABEL_RE.fullmatch(key):
            raise CredentialsError("spec_invalid", f"training-mining key {key!r} is not a C2PA label")
        if key.startswith("cawg.") and key not in CAWG_TRAINING_MINING_KEYS:
            raise CredentialsError("spec_invalid", f"{key!r}: the cawg. prefix is reserved for the defined entries")
        if use not in TRAINING_MINING_USES:
            raise CredentialsError("spec_invalid", f"{key}: use must be one of {sorted(TRAINING_MINING_USES)}")


def _check_ledger(ledger: dict) -> None:
    origin, index, digest = ledger.get("origin"), ledger.get("index"), ledger.get("envelope_sha256")
    if not isinstance(origin, str) or not origin:
        raise CredentialsError("spec_invalid", "ledger origin must be a non-empty string")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise CredentialsError("spec_invalid", "ledger index must be a non-negative integer")
    if not isinstance(digest, str) or not _SHA256_HEX_RE.fullmatch(digest):
        raise CredentialsError("spec_invalid", "ledger envelope_sha256 must be 64 lowercase hex digits")


def manifest_definition(spec: CredentialSpec, *, when: dt.datetime | None = None) -> dict[str, Any]:
    """The manifest definition (c2pa-python's JSON form) for ``spec``; exposed so callers can inspect or log it."""
    when = when or dt.datetime.now(tz=dt.UTC)
    assertions = [_actions_assertion(spec, when), _ledger_assertion(spec.ledger)]
    if spec.training_mining:  # CAWG requires one or more entries, so no entries means no assertion
        assertions.append(_training_mining_assertion(spec.training_mining))
    return {
        "claim_generator_info": [_generator_info(spec.claim_generator)],
        "title": spec.title,
        "format": spec.media_type,
        "ingredients": _ingredients(spec),
        "assertions": assertions,
    }


def _generator_info(claim_generator: str) -> dict[str, str]:
    """``"Name/1.2"`` -> the claim_generator_info map a v2 claim carries (C2PA "Claims")."""
    name, _, version = claim_generator.partition("/")
    return {"name": name, "version": version} if version else {"name": name}


def _actions_assertion(spec: CredentialSpec, when: dt.datetime) -> dict[str, Any]:
    """C2PA "Actions" v2. A generated cue is ``c2pa.created`` with trainedAlgorithmicMedia, linked to the model
    ingredient. An imported cue is ``c2pa.opened`` on a parent ingredient: it says Cueledger received an existing
    asset and claims nothing about how that asset was made (``c2pa.created`` must carry a digitalSourceType, and
    none of the IPTC values means "unknown")."""
    if spec.generated:
        action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA}
        if spec.model:
            action["softwareAgent"] = {"name": spec.model["name"], "version": spec.model["version"]}
            action["parameters"] = {"ingredientIds": ["generator-model"]}
    else:
        action = {
            "action": "c2pa.opened",
            "description": "Imported into Cueledger; how the cue was originally made is not asserted.",
            "parameters": {"ingredientIds": ["imported-cue"]},
        }
    action["when"] = when.isoformat(timespec="seconds")
    return {"label": ACTIONS_LABEL, "data": {"actions": [action]}}


def _ingredients(spec: CredentialSpec) -> list[dict[str, Any]]:
    """C2PA "Ingredient" v3: the generator model as an ``inputTo`` ingredient typed ``c2pa.types.model`` (the model is
    an input to the computation that made the cue), or the imported cue as the ``parentOf`` ingredient."""
    if spec.generated and spec.model:
        model = spec.model
        return [
            {
                "label": "generator-model",  # pairs with the action's ingredientIds; the SDK assigns the real label
                "title": f"{model['name']} {model['version']}",
                "relationship": "inputTo",
                "description": f"Generative model {model['name']} {model['version']} ({model['digest']})",
                "data_types": [{"type": "c2pa.types.model", "version": model["version"]}],
                "metadata": {"com.cueledger.model": dict(model)},
            }
        ]
    if not spec.generated:
        return [
            {
                "label": "imported-cue",
                "title": f"{spec.title} (as imported)",
                "relationship": "parentOf",
                "description": "The cue as it reached Cueledger; it carried no Content Credentials.",
            }
        ]
    return []


def _training_mining_assertion(entries: dict[str, str]) -> dict[str, Any]:
    """CAWG Training and Data Mining 1.1: ``{"entries": {key: {"use": ...}}}``."""
    return {"label": TRAINING_MINING_LABEL, "data": {"entries": {key: {"use": use} for key, use in entries.items()}}}


def _ledger_assertion(ledger: dict) -> dict[str, Any]:
    """Links the cue to its provenance ledger entry; an entity-specific assertion under Cueledger's reverse domain."""
    data = {"origin": ledger["origin"], "index": ledger["index"], "envelope_sha256": ledger["envelope_sha256"]}
    return {"label": LEDGER_LABEL, "data": data}


# --- Signing ---------------------------------------------------------------------------------------------------------

_OFFLINE_VERIFY = {
    "remote_manifest_fetch": False,  # never follow a manifest's remote URL
    "ocsp_fetch": False,  # never ask a responder about revocation
}
# One OID per line, as c2pa-rs reads trust_config; accepts all three EKUs the leaf may carry (section 14.4.1).
_TRUST_CONFIG = "".join(f"{oid.dotted_string}\n" for oid in CLAIM_SIGNER_EKUS)


def _signing_settings() -> dict[str, Any]:
    no_auto = {"enabled": False}
    return {
        "verify": {**_OFFLINE_VERIFY, "verify_after_sign": True},  # a manifest that would not validate is never written
        "trust": {"trust_config": _TRUST_CONFIG},
        "builder": {
            "thumbnail": {"enabled": False},  # audio has no picture to thumbnail
            # Exactly the actions written here: no library-invented c2pa.created/opened/placed.
            "actions": {"auto_created_action": no_auto, "auto_opened_action": no_auto, "auto_placed_action": no_auto},
        },
    }


def supports_embedding(media_type: str) -> bool:
    """Whether c2pa-python can both write and read a manifest embedded in this media type."""
    media_type = media_type.strip().lower()
    if "/" not in media_type or media_type in _MANIFEST_STORE_TYPES:
        return False
    return (
        media_type in c2pa.Builder.get_supported_mime_types() and media_type in c2pa.Reader.get_supported_mime_types()
    )


def embed(source: Path, dest: Path, spec: CredentialSpec, identity: SigningIdentity) -> bytes:
    """Write ``source`` with an embedded manifest to ``dest``; return the manifest store (application/c2pa).

    The hard binding is a data hash over the file minus the manifest's own bytes (C2PA "Data Hash"), so any later change
    to the audio makes the credential invalid.
    """
    source, dest = Path(source), Path(dest)
    if not supports_embedding(spec.media_type):
        raise CredentialsError("embedding_unsupported", f"c2pa cannot embed into {spec.media_type}; use sidecar()")
    if not source.is_file():
        raise CredentialsError("source_missing", f"{source} does not exist")
    if dest.resolve() == source.resolve():
        raise CredentialsError("dest_is_source", "embed() writes a copy; dest must differ from source")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(dest) as out, source.open("rb") as src:
        return _sign(spec, identity, src, out, detached=False)


def sidecar(source: Path, spec: CredentialSpec, identity: SigningIdentity) -> bytes:
    """A detached manifest store (``.c2pa``, application/c2pa) whose data hash covers every byte of ``source``.

    For formats c2pa cannot embed into (MIDI, Ogg); deliver it next to the file, e.g. ``cue.mid.c2pa``.
    """
    source = Path(source)
    if not source.is_file():
        raise CredentialsError("source_missing", f"{source} does not exist")
    # The signer copies the asset to its output even when it does not embed; a temporary file keeps that off the heap.
    with source.open("rb") as src, tempfile.TemporaryFile() as scratch:
        return _sign(spec, identity, src, scratch, detached=True)


@contextmanager
def _replacing(dest: Path) -> Iterator[IO[bytes]]:
    """A same-directory temporary file that becomes ``dest`` only if the block succeeds."""
    fd, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "w+b") as handle:
            yield handle
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a deliverable from the web server
        os.replace(temporary, dest)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _sign(spec: CredentialSpec, identity: SigningIdentity, src: IO[bytes], out: IO[bytes], *, detached: bool) -> bytes:
    definition = manifest_definition(spec)
    info = c2pa.C2paSignerInfo(identity.algorithm, identity.cert_chain_pem, identity.private_key_pem, None)
    try:
        with (
            c2pa.Context.from_dict(_signing_settings()) as context,
            c2pa.Builder(definition, context=context) as builder,
            c2pa.Signer.from_info(info) as signer,
        ):
            if detached:
                builder.set_no_embed()
            return builder.sign(signer, spec.media_type, src, out)
    except c2pa.C2paError as exc:
        raise CredentialsError("signing_failed", str(exc)) from None


# --- Reading ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialReport:
    valid: bool  # intact, and signed by a certificate that chains to one of the given trust anchors
    validation_state: str  # c2pa: "Trusted" | "Valid" (intact, signer untrusted) | "Invalid"; or "NoCredentials"
    errors: list[str]
    active_manifest: dict
    title: str | None = None
    trusted: bool = False
    embedded: bool | None = None
    signer: dict = field(default_factory=dict)  # issuer, common_name, alg of the claim signature
    assertions: dict[str, Any] = field(default_factory=dict)  # label -> data
    ingredients: list[dict] = field(default_factory=list)

    @property
    def actions(self) -> list[dict]:
        return list(self.assertions.get(ACTIONS_LABEL, {}).get("actions", []))


def read(path: Path, *, trust_anchors_pem: bytes | None, manifest_store: bytes | None = None) -> CredentialReport:
    """Validate the credentials of ``path`` (embedded, or the detached ``manifest_store``) offline.

    Trust follows C2PA section 14.4.1: ``trust_anchors_pem`` replaces every other anchor, so the signer is trusted only
    if its chain ends at one of these certificates. Without anchors a report can at best be intact but untrusted.
    """
    path = Path(path)
    if not path.is_file():
        raise CredentialsError("file_missing", f"{path} does not exist")
    if trust_anchors_pem is not None:
        _check_trust_anchors(trust_anchors_pem)
    media_type = _media_type_for(path, detached=manifest_store is not None)
    with c2pa.Context.from_dict(_reading_settings(trust_anchors_pem)) as context, path.open("rb") as stream:
        try:
            with c2pa.Reader(media_type, stream, manifest_store, context=context) as reader:
                return _report_from(json.loads(reader.json()), reader.get_active_manifest() or {}, reader.is_embedded())
        except c2pa.C2paError as exc:
            return _report_for_reader_error(exc, media_type, detached=manifest_store is not None)


def _report_for_reader_error(exc: c2pa.C2paError, media_type: str | None, *, detached: bool) -> CredentialReport:
    """No manifest, or one c2pa cannot parse, is a finding about the file, reported rather than raised."""
    if isinstance(exc, c2pa.C2paError.ManifestNotFound):
        return _unverified_report("NoCredentials", "no Content Credentials found")
    if isinstance(exc, c2pa.C2paError.NotSupported) and not detached:
        hint = f"{media_type or 'this file type'} cannot carry embedded Content Credentials; read its .c2pa sidecar"
        return _unverified_report("NoCredentials", hint)
    return _unverified_report("Unreadable", f"Content Credentials could not be read: {exc}")


def _check_trust_anchors(pem: bytes) -> None:
    """Anchors must be CA certificates: an end-entity certificate given as an anchor (a self-signed leaf, or the
    signing chain by mistake) would make c2pa trust that very certificate, bypassing the chain C2PA requires."""
    for certificate in _parse_certificates(pem, code="trust_anchors_invalid", what="trust anchors"):
        try:
            is_ca = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            subject = certificate.subject.rfc4514_string()
            raise CredentialsError("trust_anchors_invalid", f"trust anchor {subject} is not a CA certificate")


def _reading_settings(trust_anchors_pem: bytes | None) -> dict[str, Any]:
    trust: dict[str, Any] = {"trust_config": _TRUST_CONFIG}
    if trust_anchors_pem is not None:
        trust["trust_anchors"] = trust_anchors_pem.decode("utf-8")
    return {
        "verify": {**_OFFLINE_VERIFY, "verify_trust": True, "verify_after_reading": True},
        "trust": trust,
    }


def _media_type_for(path: Path, *, detached: bool) -> str | None:
    """The reader's format hint; None lets c2pa detect an embedded manifest's container from the bytes."""
    guessed = _AUDIO_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if guessed is None and detached:
        return "application/octet-stream"  # a detached data hash covers raw bytes; any label will do
    return guessed


def _unverified_report(state: str, error: str) -> CredentialReport:
    return CredentialReport(valid=False, validation_state=state, errors=[error], active_manifest={})


def _report_from(store: dict, active: dict, embedded: bool) -> CredentialReport:
    state = store.get("validation_state") or "Invalid"
    errors = list(_failures(store.get("validation_results") or {}))
    trusted = state == "Trusted"
    if state == "Valid" and not any("untrusted" in error for error in errors):
        # Say so explicitly: an intact manifest from an unknown signer proves nothing about who made the cue.
        errors.append("signingCredential.untrusted: the signer does not chain to a configured trust anchor")
    return CredentialReport(
        valid=trusted and not errors,
        validation_state=state,
        errors=errors,
        active_manifest=active,
        title=active.get("title"),
        trusted=trusted,
        embedded=embedded,
        signer=dict(active.get("signature_info") or {}),
        assertions={item["label"]: item.get("data") for item in active.get("assertions", [])},
        ingredients=list(active.get("ingredients", [])),
    )


def _failures(results: dict) -> Iterable[str]:
    """Failure codes of the active manifest and of any ingredient manifests (C2PA "Validation", status codes)."""
    groups = [results.get("activeManifest") or {}, *(results.get("ingredientDeltas") or [])]
    for group in groups:
        statuses = group.get("validationDeltas", group) if isinstance(group, dict) else {}
        for failure in statuses.get("failure", []):
            yield f"{failure.get('code')}: {failure.get('explanation', '')}".rstrip(": ")
