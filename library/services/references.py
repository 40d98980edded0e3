"""Writes of the reference corpus: importing reference works with their fingerprints, and re-checking cues after.

A work is fingerprinted before anything is written, so a refused file leaves no row and no corpus change; adding a
work bumps the corpus revision in the same transaction, which is how workers learn that their indexes are stale.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from library.errors import LibraryError
from library.fingerprints import ENGINE_VERSION, FingerprintError
from library.fingerprints.acoustic import acoustic_fingerprint_blocks, acoustic_fingerprint_file
from library.fingerprints.symbolic import symbolic_fingerprint
from library.models import ReferenceCorpus, ReferenceWork
from library.music import MusicError
from library.music.midi import midi_read
from library.music.render import SAMPLE_RATE, audio_blocks
from library.services import MIDI, artifact_put, recording_inspect, recording_on_disk, size_check

MAX_NAMES = 50
_ISWC = re.compile(r"T-?(\d{3})\.?(\d{3})\.?(\d{3})-?(\d)")
_ISRC = re.compile(r"([A-Z]{2})-?([A-Z0-9]{3})-?(\d{2})-?(\d{5})")


@dataclass
class ReferenceInput:
    """What an importer knows of a work; files are bytes or paths. Validated by ``reference_import``."""

    title: str
    midi: bytes | Path | None = None
    audio: bytes | Path | None = None
    composers: list[str] = field(default_factory=list)
    rightsholders: list[str] = field(default_factory=list)
    iswc: str = ""
    isrc: str = ""
    source: str = ""
    notes: str = ""
    # False: a MIDI-only work is not rendered, so it has no acoustic fingerprint (the symbolic one covers it).
    render_audio: bool = True


def iswc_normalise(text: str) -> str:
    """An ISWC in its display form ``T-123.456.789-C``, or "" for blank input.

    ISO 15707: prefix T, nine digits, one check digit C = (10 - (1 + sum(i * d_i)) mod 10) mod 10 over the digits
    d_1..d_9 from the left. Dots and hyphens are optional on input.
    """
    text = text.strip().upper().replace(" ", "")
    if not text:
        return ""
    match = _ISWC.fullmatch(text)
    if not match:
        raise LibraryError("iswc_invalid", f"{text!r} is not an ISWC: expected T-123.456.789-C.")
    digits = "".join(match.groups()[:3])
    check = (10 - (1 + sum(i * int(d) for i, d in enumerate(digits, start=1))) % 10) % 10
    if check != int(match.group(4)):
        raise LibraryError("iswc_invalid", f"{text!r} is not an ISWC: its check digit should be {check}.")
    return f"T-{match.group(1)}.{match.group(2)}.{match.group(3)}-{check}"


def isrc_normalise(text: str) -> str:
    """An ISRC in its compact form ``CCXXXYYNNNNN``, or "" for blank input.

    ISO 3901: a two-letter country code, a three-character registrant code (letters or digits), two digits of the
    year of reference and a five-digit designation code; hyphens are optional on input. There is no check digit.
    """
    text = text.strip().upper().replace(" ", "")
    if not text:
        return ""
    match = _ISRC.fullmatch(text)
    if not match:
        raise LibraryError("isrc_invalid", f"{text!r} is not an ISRC: expected CC-XXX-YY-NNNNN, e.g. US-RC1-76-07839.")
    return "".join(match.groups())


def reference_import(*, created_by, work: ReferenceInput, recheck: bool = True) -> ReferenceWork:
    """Validate and fingerprint a reference work, then store it and bump the corpus revision, all or nothing.

    A MIDI file gives the symbolic fingerprint and, rendered as cues are, the acoustic one unless a recording is
    given too. A work must yield at least one fingerprint. With ``recheck``, cues are re-checked after commit.
    """
    title = work.title.strip()
    if not title:
        raise LibraryError("title_required", "A reference work needs a title.")
    if len(title) > 300:
        raise LibraryError("title_too_long", "A title has at most 300 characters.")
    if work.midi is None and work.audio is None:
        raise LibraryError("file_required", "A reference work needs a MIDI file, an audio file, or both.")
    composers, rightsholders = _names(work.composers, "composers"), _names(work.rightsholders, "rightsholders")
    iswc, isrc = iswc_normalise(work.iswc), isrc_normalise(work.isrc)
    source, notes = work.source.strip(), work.notes.strip()
    if len(source) > 500 or len(notes) > 20_000:
        raise LibraryError("text_too_long", "The source takes at most 500 characters and the notes 20,000.")
    midi = _midi_bytes(work.midi) if work.midi is not None else None

    with recording_on_disk(work.audio) as audio:  # a recording is streamed from disk, never held in memory whole
        prints = _fingerprints(midi, audio, render=work.render_audio)
        with transaction.atomic():
            reference = ReferenceWork.objects.create(
                title=title,
                composers=composers,
                rightsholders=rightsholders,
                iswc=iswc,
                isrc=isrc,
                source=source,
                notes=notes,
                midi=artifact_put(content=midi, media_type=MIDI)[0] if midi is not None else None,
                audio=artifact_put(content=audio, media_type=prints.audio_media_type)[0] if audio else None,
                acoustic_fingerprint=prints.acoustic,
                symbolic_fingerprint=prints.symbolic,
                fingerprint_digest=prints.digest,
                engine_version=ENGINE_VERSION,
                fingerprint_notes=prints.notes,
                created_by=created_by,
            )
            corpus_bump()
            if recheck:
                transaction.on_commit(references_changed, robust=True)
    return reference


def corpus_bump() -> int:
    """Count a change of the corpus; call inside the transaction that makes it. Concurrent changes queue here."""
    ReferenceCorpus.objects.get_or_create(pk=1)
    ReferenceCorpus.objects.filter(pk=1).update(revision=F("revision") + 1, updated_at=timezone.now())
    return ReferenceCorpus.objects.get(pk=1).revision


def references_changed() -> None:
    """Re-check every ready cue against the grown corpus, soon: imports often come in bursts, and one re-check
    after the burst sees all of it (a check always uses the newest corpus when it starts)."""
    from library.tasks import similarity_recheck_task

    similarity_recheck_task.apply_async(countdown=settings.CUELEDGER_RECHECK_DELAY_SECONDS)


@dataclass(frozen=True)
class _Prints:
    acoustic: bytes | None
    symbolic: bytes | None
    notes: dict
    audio_media_type: str

    @property
    def digest(self) -> str:
        digest = hashlib.sha256()
        for part in (self.acoustic, self.symbolic):
            digest.update(hashlib.sha256(part or b"").digest())
        return digest.hexdigest()


def _fingerprints(midi: bytes | None, audio: Path | None, *, render: bool = True) -> _Prints:
    notes: dict[str, dict] = {}
    symbolic = acoustic = None
    media_type = ""
    score = None
    if midi is not None:
        try:
            score = midi_read(midi, max_duration_seconds=settings.CUELEDGER_MAX_DURATION_SECONDS)
        except MusicError as exc:
            raise LibraryError(exc.code, f"MIDI: {exc.detail}") from None
        try:
            symbolic = symbolic_fingerprint(score).to_bytes()
        except FingerprintError as exc:
            notes["symbolic"] = {"code": exc.code, "detail": exc.detail}
    if audio is not None:
        media_type = recording_inspect(audio).media_type
        try:
            acoustic = acoustic_fingerprint_file(audio).to_bytes()
        except FingerprintError as exc:
            if exc.code == "audio_unreadable":
                raise LibraryError(exc.code, exc.detail) from None
            notes["acoustic"] = {"code": exc.code, "detail": exc.detail}
    elif score is not None and not render:
        notes["acoustic"] = {"code": "not_rendered", "detail": "Imported without rendering: melody comparison only."}
    elif score is not None:
        try:
            acoustic = acoustic_fingerprint_blocks(audio_blocks(score), sample_rate=SAMPLE_RATE, channels=2).to_bytes()
        except FingerprintError as exc:
            notes["acoustic"] = {"code": exc.code, "detail": exc.detail}
        except MusicError as exc:
            raise LibraryError(exc.code, exc.detail) from None
    if acoustic is None and symbolic is None:
        reasons = "; ".join(f"{detector}: {note['detail']}" for detector, note in notes.items())
        raise LibraryError("reference_unusable", f"Nothing in this work can be fingerprinted ({reasons}).")
    return _Prints(acoustic, symbolic, notes, media_type)


def _midi_bytes(content: bytes | Path) -> bytes:
    data = content if isinstance(content, bytes) else content.read_bytes()
    size_check(len(data), "MIDI", settings.CUELEDGER_MAX_UPLOAD_BYTES)
    return data


def _names(names, what: str) -> list[str]:
    cleaned = [str(name).strip() for name in names if str(name).strip()]
    if len(cleaned) > MAX_NAMES or any(len(name) > 200 for name in cleaned):
        raise LibraryError("names_invalid", f"Give at most {MAX_NAMES} {what}, each at most 200 characters.")
    return cleaned
