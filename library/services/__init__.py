"""Writes of the catalog: storing artifacts, ingesting cues, rendering them, and tracking their jobs."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from itertools import islice
from pathlib import Path

from django.apps import apps as django_apps
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from library.credentials import C2PA_MEDIA_TYPE, cue_credentials_make
from library.errors import LibraryError
from library.models import Artifact, Cue, CueInstrument, Mood, ProcessingJob, Sequence, artifact_storage_name
from library.music import MusicError
from library.music.audio import AudioInfo, audio_inspect, audio_transcode
from library.music.midi import midi_analyse, midi_read
from library.music.render import audio_render
from provenance import services as provenance_services

log = logging.getLogger(__name__)

MIDI = "audio/midi"
FLAC = "audio/flac"
OGG = "audio/ogg"
PEAKS = "application/json"
_EXTENSIONS = {"audio/wav": ".wav", "audio/flac": ".flac", "audio/ogg": ".ogg", "audio/mpeg": ".mp3"}
MAX_MOODS = 20
# A job whose worker died this many times (killed for memory or time) is failed instead of tried forever.
JOB_MAX_ATTEMPTS = 3
ORPHAN_GRACE = timedelta(hours=1)
# Failures worth another try: the database or storage was briefly unavailable, a lock or serialisation conflict (all
# OperationalError). An IntegrityError or DataError is the same on every try, so it fails the job at once.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, OSError)
_MOOD_TEXT = re.compile(r"[\w\- ]+")
_HASH_CHUNK = 1 << 20
# Scratch files outside a job's own folder (uploaded recordings, copies of stored audio) carry this prefix, so that
# a worker's sweep removes those a killed process left behind.
SCRATCH_PREFIX = "similarity-"


# --- Artifacts ---------------------------------------------------------------------------------------------------


def artifact_put(*, content: bytes | Path, media_type: str) -> tuple[Artifact, bool]:
    """Keep ``content`` once under its SHA-256. Returns the artifact and whether this call wrote the file.

    Storing bytes that are already stored writes nothing. A file left shorter than its recorded size (a crash
    under a storage backend without atomic writes) is replaced.
    """
    sha256, size = _digest(content)
    name = artifact_storage_name(sha256)
    wrote = _storage_ensure(name, content, size)
    artifact, _ = Artifact.objects.get_or_create(sha256=sha256, defaults={"media_type": media_type, "size": size})
    return artifact, wrote


def artifact_open(artifact: Artifact):
    return default_storage.open(artifact.storage_name, "rb")


def _digest(content: bytes | Path) -> tuple[str, int]:
    if isinstance(content, bytes):
        return hashlib.sha256(content).hexdigest(), len(content)
    digest, size = hashlib.sha256(), 0
    with content.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _storage_ensure(name: str, content: bytes | Path, size: int) -> bool:
    if default_storage.exists(name):
        if default_storage.size(name) == size:
            return False
        default_storage.delete(name)
    with _as_file(content) as handle:
        saved = default_storage.save(name, handle)
    if saved != name:  # the same bytes were stored by another process at the same moment
        default_storage.delete(saved)
        return False
    return True


@contextmanager
def _as_file(content: bytes | Path):
    if isinstance(content, bytes):
        yield ContentFile(content)
    else:
        with content.open("rb") as handle:
            yield File(handle)


# --- Ingest ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationClaim:
    """How a cue made here was made: what its signed ``generation`` record states.

    ``prompt`` is kept apart from the ledger (the record carries a salted commitment to it); a version of an earlier
    cue passes that cue's ``prompt_commitment`` instead, since it was made from the same prompt.
    """

    generator: dict  # name, version, weights_digest, code_version
    seed: str  # decimal
    parameters: dict
    training_datasets: list[dict]  # name, source, license, item_count, digest
    prompt: str = ""
    prompt_commitment: dict | None = None


def cue_ingest(
    *,
    created_by,
    title: str,
    midi: bytes | None = None,
    audio: bytes | Path | None = None,
    description: str = "",
    moods: Iterable[str] = (),
    claimed_origin: dict | None = None,
    generation: GenerationClaim | None = None,
    parent: Cue | None = None,
    version_label: str = "",
    licence_constraints: dict | None = None,
) -> Cue:
    """Validate, store and analyse a cue (MIDI, a recording, or both) and create it with its signed record, all or
    nothing; rendering (or, for a recording, transcoding) is queued after commit.

    A cue from outside gets an ``ingest`` record in which ``claimed_origin`` is what the uploader says made it, kept
    as a claim. A cue made here gets a ``generation`` record from ``generation`` instead, and its prompt is kept apart
    behind a salted commitment. ``parent`` makes the cue a version of another (a cut-down, an alternate mix).

    Everything that can reject the input runs before anything is written, so a refused upload leaves no row, no
    file and no job behind.
    """
    title = title.strip()
    if not title:
        raise LibraryError("title_required", "A cue needs a title.")
    if midi is None and audio is None:
        raise LibraryError("file_required", "A cue needs a MIDI file, a recording, or both.")
    mood_names = _mood_names(moods)
    analysis = _midi_analysis(midi) if midi is not None else None
    with recording_on_disk(audio) as recording:
        recording_info = recording_inspect(recording) if recording is not None else None
        columns = _analysis_columns(analysis, recording_info)

        # A fault after a file is stored rolls the rows back but leaves the file: deleting it here could remove
        # bytes that a concurrent upload of the same file has just committed a row for. artifact_sweep_orphans
        # removes it.
        with transaction.atomic():
            midi_artifact = artifact_put(content=midi, media_type=MIDI)[0] if midi is not None else None
            audio_artifact = None
            if recording is not None:
                audio_artifact = artifact_put(content=recording, media_type=recording_info.media_type)[0]
            cue = Cue.objects.create(
                number=sequence_next("cue"),
                title=title,
                description=description.strip(),
                source=Cue.Source.IMPORTED if generation is None else Cue.Source.GENERATED,
                parent=parent,
                version_label=version_label,
                licence_constraints=dict(licence_constraints or {}),
                created_by=created_by,
                midi=midi_artifact,
                source_audio=audio_artifact,
                **columns,
            )
            cue.moods.set([Mood.objects.get_or_create(name=name)[0] for name in mood_names])
            if analysis is not None:
                CueInstrument.objects.bulk_create(
                    CueInstrument(cue=cue, **instrument.__dict__) for instrument in analysis.instruments
                )
            if generation is None:
                kind, predicate = "ingest", _ingest_predicate(cue, midi_artifact, audio_artifact, claimed_origin)
            else:
                kind, predicate = "generation", _generation_predicate(cue, generation, parent)
            subjects = [(f"{cue.code}.mid", midi_artifact.sha256)] if midi_artifact else []
            if audio_artifact is not None:
                subjects.append((f"{cue.code}.source{_EXTENSIONS[audio_artifact.media_type]}", audio_artifact.sha256))
            provenance_services.record_enqueue(
                kind=kind, reference=cue.provenance_reference, subjects=subjects, predicate=predicate
            )
            job = ProcessingJob.objects.create(cue=cue, kind=ProcessingJob.Kind.RENDER)
            # robust: a broker that is down must not turn a committed upload into an error; the job stays queued
            # in the database and job_resume_unfinished enqueues it when a worker starts.
            transaction.on_commit(partial(job_enqueue, job.pk), robust=True)
    return cue


def _midi_analysis(midi: bytes):
    limit = settings.CUELEDGER_MAX_UPLOAD_BYTES
    if len(midi) > limit:
        raise LibraryError("file_too_large", f"The MIDI file is {len(midi):,} bytes; the limit is {limit:,} bytes.")
    try:
        score = midi_read(midi, max_duration_seconds=settings.CUELEDGER_MAX_DURATION_SECONDS)
    except MusicError as exc:
        raise LibraryError(exc.code, exc.detail) from None
    return midi_analyse(score)


@contextmanager
def recording_on_disk(content: bytes | Path | None):
    """An uploaded recording as a file on disk, size-checked: the given path, or the given bytes in a scratch file
    (named with SCRATCH_PREFIX, so a worker's sweep removes one a killed process left). Never held in memory twice."""
    if content is None:
        yield None
        return
    size = len(content) if isinstance(content, bytes) else content.stat().st_size
    size_check(size, "audio", settings.CUELEDGER_MAX_REFERENCE_AUDIO_BYTES)
    if isinstance(content, Path):
        yield content
        return
    Path(settings.CUELEDGER_SCRATCH_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.CUELEDGER_SCRATCH_DIR, prefix=SCRATCH_PREFIX) as handle:
        handle.write(content)
        handle.flush()
        yield Path(handle.name)


def size_check(size: int, what: str, limit: int) -> None:
    """Refuse an empty file or one over ``limit`` bytes."""
    if size > limit:
        raise LibraryError("file_too_large", f"The {what} file is {size:,} bytes; the limit is {limit:,} bytes.")
    if not size:
        raise LibraryError("file_empty", f"The {what} file is empty.")


def recording_inspect(path: Path) -> AudioInfo:
    """What a recording is, refused as a LibraryError when it is unreadable, unsupported or too long."""
    try:
        return audio_inspect(path, max_duration_seconds=settings.CUELEDGER_MAX_DURATION_SECONDS)
    except MusicError as exc:
        raise LibraryError(exc.code, exc.detail) from None


@contextmanager
def artifact_local_path(artifact: Artifact):
    """A path a decoder can open: the stored file itself on local storage, else a scratch copy of it."""
    try:
        local = Path(default_storage.path(artifact.storage_name))
    except NotImplementedError:  # remote storage has no local path
        local = None
    if local is not None:
        yield local
        return
    Path(settings.CUELEDGER_SCRATCH_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.CUELEDGER_SCRATCH_DIR, prefix=SCRATCH_PREFIX) as copy:
        with artifact_open(artifact) as stored:
            shutil.copyfileobj(stored, copy, _HASH_CHUNK)
        copy.flush()
        yield Path(copy.name)


def _analysis_columns(analysis, recording: AudioInfo | None) -> dict:
    """The cue's analysis columns: from the MIDI when there is one (it says tempo, key and parts), else what a
    recording alone tells (its length)."""
    if analysis is not None:
        return {
            "duration_seconds": analysis.duration_seconds,
            "tempo_bpm": analysis.tempo_bpm,
            "key": analysis.key or "",
            "mode": analysis.mode or "",
            "analysis_detail": _analysis_detail(analysis),
        }
    return {
        "duration_seconds": round(recording.duration_seconds, 3),
        "tempo_bpm": None,
        "key": "",
        "mode": "",
        "analysis_detail": {
            "analysed_from": "audio",
            "tempo_map": [],
            "time_signatures": [],
            "key_source": None,
            "key_confidence": None,
            "note_count": 0,
            "pitch_range": None,
            "energy": [],
            "audio": {"sample_rate": recording.sample_rate, "channels": recording.channels},
        },
    }


def _ingest_predicate(cue: Cue, midi: Artifact | None, audio: Artifact | None, claimed_origin: dict | None) -> dict:
    primary = midi or audio
    predicate = {
        "cue": _cue_identity(cue),
        "uploaded_by": cue.created_by.get_username(),
        "uploaded_at": cue.created_at.isoformat(),
        "artifact": {"media_type": primary.media_type, "size": primary.size},
        "claimed_origin": dict(claimed_origin or {}),
    }
    if midi is not None and audio is not None:
        predicate["recording"] = {"media_type": audio.media_type, "size": audio.size}
    return predicate


def _generation_predicate(cue: Cue, claim: GenerationClaim, parent: Cue | None) -> dict:
    if claim.prompt_commitment is not None:  # a version of an earlier cue: made from that cue's prompt
        commitment = claim.prompt_commitment
    else:
        commitment = provenance_services.prompt_commit(
            prompt=claim.prompt, created_by=cue.created_by, reference=cue.provenance_reference
        )
    predicate = {
        "cue": _cue_identity(cue),
        "generator": dict(claim.generator),
        "prompt_commitment": commitment,
        "seed": claim.seed,
        "parameters": dict(claim.parameters),
        "training_datasets": [dict(dataset) for dataset in claim.training_datasets],
    }
    if parent is not None:
        predicate["derived_from"] = {
            "cue": _cue_identity(parent),
            "midi_sha256": parent.midi_id,
            "edit": cue.version_label,
        }
    return predicate


def _cue_identity(cue: Cue) -> dict:
    return {"id": str(cue.pk), "code": cue.code, "title": cue.title}


def _mood_names(moods: Iterable[str]) -> list[str]:
    names: list[str] = []
    for raw in moods:
        text = str(raw).strip()
        name = slugify(text, allow_unicode=True)
        if not _MOOD_TEXT.fullmatch(text) or not name or len(name) > 40:
            raise LibraryError("mood_invalid", f"{raw!r} is not a mood: use 1-40 letters, digits, spaces or hyphens.")
        if name not in names:
            names.append(name)
    if len(names) > MAX_MOODS:
        raise LibraryError("mood_invalid", f"A cue takes at most {MAX_MOODS} moods; {len(names)} were given.")
    return names


def _analysis_detail(analysis) -> dict:
    """The parts of the analysis that are not columns or instrument rows."""
    detail = analysis.as_dict()
    for column in ("duration_seconds", "tempo_bpm", "key", "mode", "instruments"):
        detail.pop(column)
    return {"analysed_from": "midi", **detail}


def sequence_next(name: str) -> int:
    """The next number of a named sequence; call inside a transaction. Gapless unless the transaction rolls back."""
    if not Sequence.objects.filter(name=name).update(value=F("value") + 1):
        try:
            with transaction.atomic():
                Sequence.objects.create(name=name, value=1)
        except IntegrityError:  # created by a concurrent first caller
            Sequence.objects.filter(name=name).update(value=F("value") + 1)
    return Sequence.objects.get(name=name).value


# --- Rendering and jobs ------------------------------------------------------------------------------------------


def job_enqueue(job_id) -> None:
    """Send a job to the workers: the task is chosen by the job's kind."""
    from library.tasks import render_cue_task, similarity_check_task

    kind = ProcessingJob.objects.filter(pk=job_id).values_list("kind", flat=True).first()
    task = similarity_check_task if kind == ProcessingJob.Kind.SIMILARITY else render_cue_task
    task.delay(job_id=str(job_id))


class JobBusy(Exception):
    """Another worker holds a live lease on the job; the task should try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"job is running elsewhere; retry in {retry_after} s")
        self.retry_after = retry_after


def cue_render(*, job_id) -> None:
    """Render a cue's MIDI to FLAC, an Ogg Vorbis preview and waveform peaks, sign Content Credentials for them and
    the MIDI, and mark the cue ready.

    Idempotent and safe to deliver twice: a finished job is left alone, a job another worker is running (its lease,
    renewed with every progress report, is fresh) raises JobBusy, and each attempt works in its own folder. The audio
    is deterministic; the signed FLAC is not (each manifest has its own instance id), so an attempt that died after
    storing leaves an unreferenced artifact, which artifact_sweep_orphans removes.
    """
    attempt = job_claim(job_id)
    if attempt is None:
        return
    job = ProcessingJob.objects.select_related("cue__midi", "cue__source_audio").get(pk=job_id)
    scratch_root = Path(settings.CUELEDGER_SCRATCH_DIR)
    for stale in scratch_root.glob(f"{job.pk}-*"):  # earlier attempts of this job are dead: we hold the lease
        shutil.rmtree(stale, ignore_errors=True)
    scratch = scratch_root / f"{job.pk}-{attempt}"
    scratch.mkdir(parents=True)
    try:
        midi = None
        if job.cue.midi is not None:
            with artifact_open(job.cue.midi) as handle:
                midi = handle.read()
        rendered = _cue_audio(job, midi, scratch)
        _job_update(job.pk, stage="signing", progress=0.85)
        midi_path = None
        if midi is not None:  # the sidecar's data hash covers the file's bytes
            midi_path = scratch / "cue.mid"
            midi_path.write_bytes(midi)
        signed = cue_credentials_make(
            job.cue, flac=rendered.flac, preview=rendered.preview, midi=midi_path, out_dir=scratch
        )
        _job_update(job.pk, stage="storing", progress=0.9)
        stored = {
            "audio": artifact_put(content=signed.flac, media_type=FLAC)[0],
            "preview": artifact_put(content=rendered.preview, media_type=OGG)[0],
            "waveform": artifact_put(content=rendered.peaks, media_type=PEAKS)[0],
            "preview_credentials": artifact_put(content=signed.preview_manifest, media_type=C2PA_MEDIA_TYPE)[0],
        }
        if signed.midi_manifest is not None:
            stored["midi_credentials"] = artifact_put(content=signed.midi_manifest, media_type=C2PA_MEDIA_TYPE)[0]
        with transaction.atomic():
            if not _job_still_ours(job.pk, attempt):
                return
            cue = Cue.objects.select_for_update().get(pk=job.cue_id)
            for field, artifact in stored.items():
                setattr(cue, field, artifact)
            cue.status, cue.processing_error = Cue.Status.READY, ""
            cue.save(update_fields=[*stored, "status", "processing_error", "updated_at"])
            _job_update(
                job.pk,
                state=ProcessingJob.State.SUCCEEDED,
                stage="done",
                progress=1.0,
                error="",
                finished_at=timezone.now(),
            )
            # The check reads the FLAC stored above; it runs as a job of its own so that a rendered cue is never
            # lost to a failing check, and so that re-checks use the same path.
            similarity_job_create(cue_id=cue.pk, trigger="ingest")
    except LibraryError as exc:
        job_fail(job_id=job.pk, error=f"{exc.code}: {exc.detail}", attempt=attempt)
    except MusicError as exc:
        job_fail(job_id=job.pk, error=f"{exc.code}: {exc.detail}", attempt=attempt)
    except TRANSIENT_ERRORS:
        raise  # the task retries; the next attempt claims the job again
    except Exception as exc:
        job_fail(job_id=job.pk, error=f"internal_error: {type(exc).__name__}: {exc}", attempt=attempt)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _cue_audio(job: ProcessingJob, midi: bytes | None, scratch: Path):
    """The cue's master, preview and peaks: transcoded from the uploaded recording when there is one (that is the
    sound the uploader delivers), else rendered from the MIDI."""

    def progress(share: float) -> None:
        _job_update(job.pk, progress=round(0.85 * share, 3))

    if job.cue.source_audio is not None:
        _job_update(job.pk, stage="transcoding")
        with artifact_local_path(job.cue.source_audio) as source:
            return audio_transcode(source, scratch, progress=progress)
    score = midi_read(midi, max_duration_seconds=math.inf)
    return audio_render(score, scratch, progress=progress)


def similarity_job_create(*, cue_id, trigger: str) -> ProcessingJob | None:
    """Queue a similarity check of a cue, in the caller's transaction; sent to the workers after commit. None when
    a check of the cue is already queued and has not started: that one will see the same corpus or a newer one."""
    try:
        with transaction.atomic():
            job = ProcessingJob.objects.create(cue_id=cue_id, kind=ProcessingJob.Kind.SIMILARITY, reason=trigger)
    except IntegrityError:  # one_queued_job_per_cue_and_kind: another caller queued it first
        return None
    transaction.on_commit(partial(job_enqueue, job.pk), robust=True)
    return job


def job_claim(job_id, *, stage: str = "rendering") -> int | None:
    """Take a catalog job for this worker: the attempt number, or None when it is finished or has failed too often.
    Raises JobBusy when another worker's lease on it is still fresh."""
    return lease_claim(ProcessingJob, job_id, state_field="state", fail=job_fail, stage=stage, progress=0.0)


def lease_claim(model, job_id, *, state_field: str, fail, **running_fields) -> int | None:
    """Take a leased background job (a row with a ``state_field`` of queued/running/succeeded/failed, ``attempts``,
    ``started_at`` and ``updated_at``) for this worker: returns the attempt number, or None when the job is finished
    or was started too often (then ``fail`` records why). Raises JobBusy while another worker's lease is fresh.

    One conditional UPDATE decides, so two workers can never both hold the job. A running job whose ``updated_at``
    is older than the lease is taken to be dead and is taken over.
    """
    now = timezone.now()
    claimable = Q(**{state_field: "queued"}) | Q(**{state_field: "running", "updated_at__lt": _lease_cutoff()})
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=job_id)
        if job.is_finished:
            return None
        if job.attempts >= JOB_MAX_ATTEMPTS:
            fail(
                job_id=job.pk,
                error=f"attempts_exhausted: the job was started {job.attempts} times and never "
                "finished; the worker may have been killed (out of memory or time)",
            )
            return None
        claimed = model.objects.filter(claimable, pk=job_id).update(
            **{state_field: "running"},
            attempts=F("attempts") + 1,
            started_at=now,
            updated_at=now,
            **running_fields,
        )
    if not claimed:
        raise JobBusy(retry_after=settings.CUELEDGER_JOB_LEASE_SECONDS)
    return job.attempts + 1


def _job_still_ours(job_id, attempt: int) -> bool:
    return lease_held(ProcessingJob, job_id, attempt)


def lease_held(model, job_id, attempt: int) -> bool:
    """Whether ``attempt`` still holds the leased job (locking its row until the transaction ends)."""
    job = model.objects.select_for_update().get(pk=job_id)
    return job.attempts == attempt and not job.is_finished


def job_fail(*, job_id, error: str, attempt: int | None = None) -> None:
    """Record that a job gave up; a cue whose render failed goes back to draft with the reason. With ``attempt``,
    only if that attempt still holds the job; without, only if no worker holds a live lease on it."""
    with transaction.atomic():
        job = ProcessingJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished:
            return
        if attempt is not None and job.attempts != attempt:
            return
        leased = job.state == ProcessingJob.State.RUNNING and job.updated_at > _lease_cutoff()
        if attempt is None and leased:
            return
        _job_update(job.pk, state=ProcessingJob.State.FAILED, stage="failed", error=error, finished_at=timezone.now())
        # A cue without audio is unusable; a rendered cue whose check failed keeps its audio and status, and the
        # failed job (the API's `processing`) says why it has no report yet.
        if job.kind == ProcessingJob.Kind.RENDER:
            Cue.objects.filter(pk=job.cue_id).update(
                status=Cue.Status.DRAFT,
                processing_error=f"{job.get_kind_display()} failed: {error}",
                updated_at=timezone.now(),
            )
    log.warning("job %s on cue %s failed: %s", job_id, job.cue_id, error)


def job_resume_unfinished() -> int:
    """Enqueue every job the database says is queued, or running without a live lease; returns how many.

    The embedded broker forgets a message once a worker has taken it, and a broker that was down when a cue was
    committed never got the message at all: the database still knows what is unfinished. Jobs are claimed
    atomically, so a message that was not lost after all finds its job taken or done.
    """
    stale = _lease_cutoff()
    unfinished = list(
        ProcessingJob.objects.filter(
            Q(state=ProcessingJob.State.QUEUED) | Q(state=ProcessingJob.State.RUNNING, updated_at__lt=stale)
        ).values_list("pk", flat=True)
    )
    for job_id in unfinished:
        job_enqueue(job_id)
    return len(unfinished)


def artifact_sweep_orphans(*, older_than: timedelta = ORPHAN_GRACE) -> int:
    """Delete stored files that no Artifact row names, and Artifact rows that nothing refers to, once older than
    ``older_than``; returns how many files went.

    Both are left by work that failed after storing bytes: a transaction that rolled back, or a render attempt
    whose worker died before it linked what it stored. The grace period covers work still in flight.
    """
    cutoff = timezone.now() - older_than
    unreferenced = Artifact.objects.filter(created_at__lt=cutoff)
    for model in django_apps.get_models():
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is Artifact:
                # NULLs must not reach NOT IN: one NULL there would make it match nothing at all.
                used = model._default_manager.filter(**{f"{field.name}__isnull": False}).values(field.attname)
                unreferenced = unreferenced.exclude(pk__in=used)
    unreferenced.delete()

    removed = 0
    old_files = (name for name in _stored_artifact_names() if default_storage.get_modified_time(name) < cutoff)
    while batch := list(islice(old_files, 500)):
        known = set(
            Artifact.objects.filter(pk__in=[name.rsplit("/", 1)[-1] for name in batch]).values_list("pk", flat=True)
        )
        for name in batch:
            if name.rsplit("/", 1)[-1] not in known:
                default_storage.delete(name)
                removed += 1
    return removed


def _stored_artifact_names():
    if not default_storage.exists("artifacts"):
        return
    for first in default_storage.listdir("artifacts")[0]:
        for second in default_storage.listdir(f"artifacts/{first}")[0]:
            for filename in default_storage.listdir(f"artifacts/{first}/{second}")[1]:
                if not filename.startswith("."):
                    yield f"artifacts/{first}/{second}/{filename}"


def _lease_cutoff():
    return timezone.now() - timedelta(seconds=settings.CUELEDGER_JOB_LEASE_SECONDS)


def _job_update(job_id, **fields) -> None:
    ProcessingJob.objects.filter(pk=job_id).update(updated_at=timezone.now(), **fields)
