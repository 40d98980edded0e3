"""Writes of the catalog: storing artifacts, ingesting cues, rendering them, and tracking their jobs."""

from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from itertools import islice
from pathlib import Path

from django.apps import apps as django_apps
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, IntegrityError, InterfaceError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import slugify

from library.credentials import C2PA_MEDIA_TYPE, cue_credentials_make
from library.errors import LibraryError
from library.models import Artifact, Cue, CueInstrument, Mood, ProcessingJob, Sequence, artifact_storage_name
from library.music import MusicError
from library.music.midi import midi_analyse, midi_read
from library.music.render import audio_render
from provenance import services as provenance_services

log = logging.getLogger(__name__)

MIDI = "audio/midi"
FLAC = "audio/flac"
OGG = "audio/ogg"
PEAKS = "application/json"
MAX_MOODS = 20
# A job whose worker died this many times (killed for memory or time) is failed instead of tried forever.
JOB_MAX_ATTEMPTS = 3
ORPHAN_GRACE = timedelta(hours=1)
# Failures worth another try: the database or storage was briefly unavailable.
TRANSIENT_ERRORS = (DatabaseError, InterfaceError, OSError)
_MOOD_TEXT = re.compile(r"[\w\- ]+")
_HASH_CHUNK = 1 << 20


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


def cue_ingest(
    *,
    created_by,
    title: str,
    midi: bytes,
    description: str = "",
    moods: Iterable[str] = (),
    source: str = Cue.Source.IMPORTED,
    claimed_origin: dict | None = None,
) -> Cue:
    """Validate, store and analyse a MIDI cue and create it with its signed ``ingest`` record, all or nothing;
    rendering is queued after commit. ``claimed_origin`` is what the uploader says made the cue, kept as a claim.

    Everything that can reject the input runs before anything is written, so a refused upload leaves no row, no
    file and no job behind.
    """
    title = title.strip()
    if not title:
        raise LibraryError("title_required", "A cue needs a title.")
    mood_names = _mood_names(moods)
    limit = settings.CUELEDGER_MAX_UPLOAD_BYTES
    if len(midi) > limit:
        raise LibraryError("file_too_large", f"The MIDI file is {len(midi):,} bytes; the limit is {limit:,} bytes.")
    try:
        score = midi_read(midi, max_duration_seconds=settings.CUELEDGER_MAX_DURATION_SECONDS)
    except MusicError as exc:
        raise LibraryError(exc.code, exc.detail) from None
    analysis = midi_analyse(score)

    # A fault after the file is stored rolls the rows back but leaves the file: deleting it here could remove bytes
    # that a concurrent upload of the same file has just committed a row for. artifact_sweep_orphans removes it.
    with transaction.atomic():
        artifact, _ = artifact_put(content=midi, media_type=MIDI)
        cue = Cue.objects.create(
            number=sequence_next("cue"),
            title=title,
            description=description.strip(),
            source=source,
            created_by=created_by,
            midi=artifact,
            duration_seconds=analysis.duration_seconds,
            tempo_bpm=analysis.tempo_bpm,
            key=analysis.key or "",
            mode=analysis.mode or "",
            analysis_detail=_analysis_detail(analysis),
        )
        cue.moods.set([Mood.objects.get_or_create(name=name)[0] for name in mood_names])
        CueInstrument.objects.bulk_create(
            CueInstrument(cue=cue, **instrument.__dict__) for instrument in analysis.instruments
        )
        provenance_services.record_enqueue(
            kind="ingest",
            reference=cue.provenance_reference,
            subjects=[(f"{cue.code}.mid", artifact.sha256)],
            predicate={
                "cue": {"id": str(cue.pk), "code": cue.code, "title": cue.title},
                "uploaded_by": created_by.get_username(),
                "uploaded_at": cue.created_at.isoformat(),
                "artifact": {"media_type": MIDI, "size": artifact.size},
                "claimed_origin": dict(claimed_origin or {}),
            },
        )
        job = ProcessingJob.objects.create(cue=cue, kind=ProcessingJob.Kind.RENDER)
        # robust: a broker that is down must not turn a committed upload into an error; the job stays queued in
        # the database and job_resume_unfinished enqueues it when a worker starts.
        transaction.on_commit(partial(job_enqueue, job.pk), robust=True)
    return cue


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
    return detail


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
    job = ProcessingJob.objects.select_related("cue__midi").get(pk=job_id)
    scratch_root = Path(settings.CUELEDGER_SCRATCH_DIR)
    for stale in scratch_root.glob(f"{job.pk}-*"):  # earlier attempts of this job are dead: we hold the lease
        shutil.rmtree(stale, ignore_errors=True)
    scratch = scratch_root / f"{job.pk}-{attempt}"
    scratch.mkdir(parents=True)
    try:
        with artifact_open(job.cue.midi) as handle:
            midi = handle.read()
        score = midi_read(midi, max_duration_seconds=math.inf)
        rendered = audio_render(
            score, scratch, progress=lambda share: _job_update(job.pk, progress=round(0.85 * share, 3))
        )
        _job_update(job.pk, stage="signing", progress=0.85)
        (scratch / "cue.mid").write_bytes(midi)
        signed = cue_credentials_make(
            job.cue, flac=rendered.flac, preview=rendered.preview, midi=scratch / "cue.mid", out_dir=scratch
        )
        _job_update(job.pk, stage="storing", progress=0.9)
        stored = {
            "audio": artifact_put(content=signed.flac, media_type=FLAC)[0],
            "preview": artifact_put(content=rendered.preview, media_type=OGG)[0],
            "waveform": artifact_put(content=rendered.peaks, media_type=PEAKS)[0],
            "preview_credentials": artifact_put(content=signed.preview_manifest, media_type=C2PA_MEDIA_TYPE)[0],
            "midi_credentials": artifact_put(content=signed.midi_manifest, media_type=C2PA_MEDIA_TYPE)[0],
        }
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
    """Take a job for this worker: returns the attempt number, or None when the job is finished or has failed too
    often. Raises JobBusy when another worker's lease on it is still fresh.

    One conditional UPDATE decides, so two workers can never both hold the job.
    """
    now = timezone.now()
    stale = _lease_cutoff()
    claimable = Q(state=ProcessingJob.State.QUEUED) | Q(state=ProcessingJob.State.RUNNING, updated_at__lt=stale)
    with transaction.atomic():
        job = ProcessingJob.objects.select_for_update().get(pk=job_id)
        if job.is_finished:
            return None
        if job.attempts >= JOB_MAX_ATTEMPTS:
            job_fail(
                job_id=job.pk,
                error=f"attempts_exhausted: the job was started {job.attempts} times and never "
                "finished; the worker may have been killed (out of memory or time)",
            )
            return None
        claimed = ProcessingJob.objects.filter(claimable, pk=job_id).update(
            state=ProcessingJob.State.RUNNING,
            stage=stage,
            progress=0.0,
            attempts=F("attempts") + 1,
            started_at=now,
            updated_at=now,
        )
    if not claimed:
        raise JobBusy(retry_after=settings.CUELEDGER_JOB_LEASE_SECONDS)
    return job.attempts + 1


def _job_still_ours(job_id, attempt: int) -> bool:
    job = ProcessingJob.objects.select_for_update().get(pk=job_id)
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
