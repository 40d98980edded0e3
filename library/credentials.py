"""Content Credentials (C2PA) for a cue's files, linked to the cue's record in the provenance ledger.

The FLAC master carries its manifest inside; the MIDI and the Ogg preview, which C2PA cannot embed into, get
detached manifest stores (application/c2pa) bound to their bytes.
"""

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from library.errors import LibraryError
from library.models import Cue
from provenance import content_credentials as c2pa
from provenance import services as provenance_services

C2PA_MEDIA_TYPE = "application/c2pa"
# Our catalog licenses music; it grants no right to train models on it or mine it (CAWG training-and-data-mining).
TRAINING_AND_MINING = {
    "cawg.ai_generative_training": "notAllowed",
    "cawg.ai_training": "notAllowed",
    "cawg.ai_inference": "notAllowed",
    "cawg.data_mining": "notAllowed",
}


@dataclass(frozen=True)
class SignedFiles:
    flac: Path
    preview_manifest: bytes
    midi_manifest: bytes | None  # None for a cue without MIDI


def cue_credentials_make(cue: Cue, *, flac: Path, preview: Path, midi: Path | None, out_dir: Path) -> SignedFiles:
    """Sign the cue's rendered files. Needs the cue's ingest or generation record appended to the ledger first (it
    drains the outbox to make sure) and the signing identity configured (CUELEDGER_C2PA_CERT_CHAIN and _KEY)."""
    provenance_services.outbox_drain()
    ledger = provenance_services.origin_record(cue.provenance_reference)
    if ledger is None:
        raise LibraryError("provenance_record_missing", f"{cue.code} has no ingest record in the ledger yet.")
    try:
        identity = c2pa.identity_load(settings.CUELEDGER_C2PA_CERT_CHAIN, settings.CUELEDGER_C2PA_KEY)
    except c2pa.CredentialsError as exc:
        raise LibraryError(
            "credentials_unavailable",
            f"Content Credentials cannot be signed ({exc.detail}); run `manage.py c2pa dev-ca` for development or "
            "set CUELEDGER_C2PA_CERT_CHAIN and CUELEDGER_C2PA_KEY.",
        ) from None

    generator = provenance_services.generator_of(cue.provenance_reference)
    model = None
    if generator is not None:  # the model is the ingredient of a generated cue's "created" action
        model = {"name": generator["name"], "version": generator["version"], "digest": generator["weights_digest"]}

    def spec(media_type: str) -> c2pa.CredentialSpec:
        return c2pa.CredentialSpec(
            title=f"{cue.code} {cue.title}",
            media_type=media_type,
            generated=cue.source == Cue.Source.GENERATED,
            model=model,
            training_mining=TRAINING_AND_MINING,
            ledger=ledger,
        )

    signed_flac = out_dir / "audio.signed.flac"
    c2pa.embed(flac, signed_flac, spec("audio/flac"), identity)
    return SignedFiles(
        flac=signed_flac,
        preview_manifest=c2pa.sidecar(preview, spec("audio/ogg"), identity),
        midi_manifest=c2pa.sidecar(midi, spec("audio/midi"), identity) if midi is not None else None,
    )
