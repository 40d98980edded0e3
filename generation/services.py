"""Writes of generation: installing the composer's model, the memorisation guard, and generation jobs.

A request is parsed and validated when it is made, so a refused prompt queues nothing; the job then composes in a
worker and hands each cue to the catalog's ingest with its generation claim, one transaction per cue. A job that dies
half-way resumes after the cues it already made: each cue and its result row are committed together.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cueledger.roles import ADMIN, has_role
from generation.composer import ComposerError
from generation.composer.compose import CODE_VERSION, cutdown_spec, timing_check
from generation.composer.guard import compose_unlike
from generation.composer.model import MelodyModel
from generation.composer.prompts import parse_prompt
from generation.composer.spec import GenerationSpec, spec_from_dict
from generation.composer.training import DEFAULT_MODEL_DIR, TrainingWork, model_load, work_midi
from generation.errors import GenerationError
from generation.models import GenerationJob, GenerationResult, Generator, TrainingReference
from library import services as library_services
from library.errors import LibraryError
from library.fingerprints import ENGINE_VERSION
from library.fingerprints.symbolic import SymbolicFingerprint, SymbolicIndex
from library.models import Cue, ReferenceWork
from library.services.references import ReferenceInput, corpus_bump, reference_import, references_changed

log = logging.getLogger(__name__)

GENERATOR_NAME = "cueledger-composer"
# The account that registers training works as reference works; it cannot log in.
SYSTEM_USERNAME = "cueledger-composer"
MAX_VARIATIONS = 8
TRANSIENT_ERRORS = library_services.TRANSIENT_ERRORS
SEED_SPACE = 2**64
JOB_MAX_ATTEMPTS = library_services.JOB_MAX_ATTEMPTS
INTERNAL_ERROR = "internal_error: the job failed on our side; the error has been logged"
# What a version of a generated cue can be: the edit's name, its label, and how it is made from the parent.
EDITS = {
    "cutdown-15": ("15 s cut-down", {"seconds": 15.0}),
    "cutdown-30": ("30 s cut-down", {"seconds": 30.0}),
    "cutdown-60": ("60 s cut-down", {"seconds": 60.0}),
    "no-percussion": ("no percussion", {"mix": "no-percussion"}),
    "underscore": ("underscore (no melody)", {"mix": "underscore"}),
}

_models: dict[str, MelodyModel] = {}
_training_indexes: dict[tuple[str, str, int], SymbolicIndex] = {}
_models_lock = threading.Lock()


# --- The model ---------------------------------------------------------------------------------------------------


def generator_install(*, directory: Path = DEFAULT_MODEL_DIR, make_default: bool = True) -> Generator:
    """Register a trained model (``model.json`` and ``manifest.json`` in ``directory``); installing the same model
    again changes nothing but, with ``make_default``, which model is the default."""
    try:
        model, manifest = model_load(directory)
    except ComposerError as exc:
        raise GenerationError(exc.code, exc.detail) from None
    with transaction.atomic():
        generator = Generator.objects.filter(pk=model.version).first()
        if generator is None:
            model_file = library_services.artifact_put(content=model.to_bytes(), media_type="application/json")[0]
            manifest_file = library_services.artifact_put(
                content=(directory / "manifest.json").read_bytes(), media_type="application/json"
            )[0]
            generator = Generator.objects.create(
                version=model.version,
                name=GENERATOR_NAME,
                code_version=CODE_VERSION,
                model_file=model_file,
                manifest_file=manifest_file,
                manifest=manifest,
            )
        if make_default and not generator.is_default:
            Generator.objects.filter(is_default=True).update(is_default=False)
            Generator.objects.filter(pk=generator.pk).update(is_default=True)
            generator.is_default = True
    return generator


def generator_default() -> Generator:
    """The model new generations use: the default one installed, or the shipped model, installed now."""
    generator = Generator.objects.filter(is_default=True).first()
    if generator is not None:
        return generator
    try:
        return generator_install()
    except IntegrityError:  # installed by a concurrent first request
        return Generator.objects.get(is_default=True)


def generator_model(generator: Generator) -> MelodyModel:
    """The generator's melody model, read once per process from its stored file."""
    with _models_lock:
        model = _models.get(generator.version)
        if model is None:
            with library_services.artifact_open(generator.model_file) as handle:
                model = MelodyModel.from_bytes(handle.read())
            if model.version != generator.version:
                raise GenerationError(
                    "model_corrupt", f"The stored model file of {generator} does not hash to its version."
                )
            _models[generator.version] = model
    return model


def training_index(generator: Generator) -> SymbolicIndex:
    """The symbolic index of the generator's registered training works, which the composer's memorisation filter
    compares every composition with; built once per process from the fingerprints stored at registration."""
    references = TrainingReference.objects.filter(generator=generator)
    key = (generator.version, ENGINE_VERSION, references.count())
    with _models_lock:
        index = _training_indexes.get(key)
        if index is None:
            index = SymbolicIndex()
            prints = ReferenceWork.objects.filter(
                pk__in=references.values("reference_id"), symbolic_fingerprint__isnull=False
            ).order_by("pk")
            for reference_id, data in prints.values_list("pk", "symbolic_fingerprint"):
                index.add(reference_id, SymbolicFingerprint.from_bytes(bytes(data)))
            index.freeze()
            _training_indexes[key] = index
    return index


def training_datasets(generator: Generator) -> list[dict]:
    """The training data of a generator as its generation records state it: one dataset per corpus collection."""
    source = f"music21 {generator.manifest.get('music21_version', '')} corpus".replace("  ", " ")
    return [
        {
            "name": collection["name"],
            "source": f"{source}/{collection['name']}",
            "license": collection["license"],
            "item_count": collection["work_count"],
            "digest": collection["digest"],
        }
        for collection in generator.manifest["collections"]
    ]


def licence_constraints(generator: Generator) -> dict:
    """What the cues of a generator inherit from its training data: every licence, and whether all of them allow
    commercial use (False if any forbids it, None if any is unknown and none forbids it)."""
    collections = generator.manifest["collections"]
    allowed = [collection["commercial_use"] for collection in collections]
    commercial = False if False in allowed else (None if None in allowed else True)
    return {
        "training_licences": sorted({collection["license"] for collection in collections}),
        "commercial_use": commercial,
        "generator_version": generator.version,
    }


def system_user():
    """The account that owns what Cueledger registers by itself; it cannot log in."""
    user, created = get_user_model().objects.get_or_create(username=SYSTEM_USERNAME, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def training_references_register(*, generator: Generator, progress: Callable[[int, int], None] | None = None) -> int:
    """The memorisation guard: register every training work of ``generator`` as a reference work, so that every
    cue it generates is checked against its own training data. Idempotent; returns how many works were added.

    Training works are melodies, checked by the symbolic detector; they are not rendered for the acoustic one (a
    piano rendering of a folk tune says nothing about an orchestral cue that the melody comparison does not).
    """
    works = generator.manifest["works"]
    done = set(TrainingReference.objects.filter(generator=generator).values_list("work_key", flat=True))
    owner, added = system_user(), 0
    for position, entry in enumerate(works, start=1):
        key = _work_key(entry)
        if key not in done:
            _training_reference_add(generator, entry, key, owner)
            added += 1
        if progress:
            progress(position, len(works))
    Generator.objects.filter(pk=generator.pk).update(references_registered_at=timezone.now())
    if added:
        transaction.on_commit(references_changed, robust=True)
    return added


def _training_reference_add(generator: Generator, entry: dict, key: str, owner) -> None:
    work = TrainingWork(**{field: entry[field] for field in TrainingWork.__dataclass_fields__})
    licence = entry["license"]
    reference_input = ReferenceInput(
        title=entry["title"] or key,
        midi=work_midi(work),
        source=f"music21 corpus {key} (training work of {generator.name} {generator.version[:12]})",
        notes=f"Training work of the built-in composer; collection {entry['collection']}, licence {licence}.",
        render_audio=False,
    )
    with transaction.atomic():
        try:
            reference = reference_import(created_by=owner, work=reference_input, recheck=False)
        except LibraryError as exc:  # a work without a usable melody cannot be memorised either
            log.info("training work %s not registered: %s", key, exc)
            corpus_bump()
            return
        TrainingReference.objects.create(generator=generator, work_key=key, reference=reference)


def _work_key(entry: dict) -> str:
    return f"{entry['corpus_path']}#{entry['number']}" if entry.get("number") is not None else entry["corpus_path"]


# --- Requests ----------------------------------------------------------------------------------------------------


def generation_request(
    *,
    created_by,
    prompt: str | None,
    fields: Mapping[str, Any] | None = None,
    seed: str | None = None,
    variations: int = 1,
    title: str = "",
) -> GenerationJob:
    """Parse and validate a generation request and queue it; nothing is queued when anything is refused."""
    try:
        parsed = parse_prompt(prompt, fields)
        timing_check(parsed.spec)
    except ComposerError as exc:
        raise GenerationError(exc.code, exc.detail) from None
    limit = settings.CUELEDGER_MAX_DURATION_SECONDS
    if parsed.spec.duration_seconds > limit:
        raise GenerationError(
            "duration_out_of_range", f"This catalog takes cues of at most {limit:g} s (CUELEDGER_MAX_DURATION_SECONDS)."
        )
    if isinstance(variations, bool) or not isinstance(variations, int) or not 1 <= variations <= MAX_VARIATIONS:
        raise GenerationError("variations_invalid", f"variations must be a whole number from 1 to {MAX_VARIATIONS}.")
    seed_value = seed_parse(seed) if seed is not None else secrets.randbelow(SEED_SPACE)
    title = (title or "").strip() or spec_title(parsed.spec)
    if len(title) > 200:
        raise GenerationError("title_too_long", "A title has at most 200 characters.")
    if not title.isprintable():  # control characters, and lone surrogates that no UTF-8 column can hold
        raise GenerationError("title_invalid", "A title is printable Unicode text.")
    generator = generator_default()
    with transaction.atomic():
        job = GenerationJob.objects.create(
            kind=GenerationJob.Kind.COMPOSE,
            created_by=created_by,
            generator=generator,
            title=title,
            prompt=_prompt_as_given(prompt, fields),
            spec=parsed.spec.as_dict(),
            ignored=list(parsed.ignored),
            defaulted=list(parsed.defaulted),
            seed=str(seed_value),
            variations=variations,
        )
        transaction.on_commit(partial(generation_enqueue, job.pk), robust=True)
    return job


def versions_request(*, created_by, cue: Cue, edits: list[str]) -> GenerationJob:
    """Queue versions of a generated cue: cut-downs that end properly and alternate mixes, each a cue of its own
    whose generation record links to ``cue``. Only the cue's producer (or an admin) makes its versions."""
    if cue.created_by_id != created_by.pk and not has_role(created_by, ADMIN):
        raise GenerationError(
            "permission_denied", f"Only {cue.code}'s producer or an admin makes its versions.", http_status=403
        )
    result = GenerationResult.objects.filter(cue=cue).select_related("job__generator").first()
    if result is None:
        raise GenerationError("cue_not_generated", f"{cue.code} was not composed here, so it has no versions to make.")
    if result.edit:
        raise GenerationError(
            "cue_is_a_version",
            f"{cue.code} is itself a version ({cue.version_label}); make versions of {cue.parent.code} instead.",
        )
    if not edits or len(edits) > len(EDITS) or len(set(edits)) != len(edits):
        raise GenerationError("edits_invalid", f"Give one or more different edits from: {', '.join(EDITS)}.")
    unknown = [edit for edit in edits if edit not in EDITS]
    if unknown:
        raise GenerationError("edit_unknown", f"{unknown[0]!r} is not an edit; choose from {', '.join(EDITS)}.")
    spec = spec_from_dict(result.spec)
    for edit in edits:
        how = EDITS[edit][1]
        seconds = how.get("seconds")
        if seconds is not None and seconds >= spec.duration_seconds:
            raise GenerationError(
                "cutdown_too_long",
                f"A {seconds:.0f} s cut-down of {cue.code} is not shorter than the cue "
                f"({spec.duration_seconds:.1f} s).",
            )
        if how.get("mix") == "no-percussion" and set(spec.ensemble) <= {"percussion"}:
            raise GenerationError("edit_empty", f"{cue.code} is all percussion: without it nothing would be left.")
        if seconds is not None:
            try:
                timing_check(cutdown_spec(spec, seconds))
            except ComposerError as exc:
                raise GenerationError(exc.code, exc.detail) from None
    with transaction.atomic():
        job = GenerationJob.objects.create(
            kind=GenerationJob.Kind.VERSIONS,
            created_by=created_by,
            generator=result.job.generator,
            title=cue.title,
            spec=result.spec,
            # The seed the original was composed from, which the memorisation filter may have derived from its own.
            seed=result.composition.get("composed_seed", result.seed),
            parent=cue,
            edits=list(edits),
        )
        transaction.on_commit(partial(generation_enqueue, job.pk), robust=True)
    return job


def _prompt_as_given(prompt: str | None, fields: Mapping[str, Any] | None) -> str:
    """What the producer asked, as kept (confidentially) and committed to: the text, or with structured fields the
    text and the fields as canonical JSON."""
    if not fields:
        return (prompt or "").strip()
    return json.dumps({"prompt": prompt or "", "fields": dict(fields)}, sort_keys=True, ensure_ascii=False)


def seed_parse(seed: Any) -> int:
    """A seed given as a string of decimal digits below 2**64 (JSON numbers that large lose precision)."""
    if not isinstance(seed, str) or not seed.isascii() or not seed.isdigit() or len(seed) > 20:
        raise GenerationError("seed_invalid", 'seed must be a string of decimal digits, e.g. "42".')
    value = int(seed)
    if value >= SEED_SPACE:
        raise GenerationError("seed_invalid", "seed must be below 2**64 (18446744073709551616).")
    return value


def spec_title(spec: GenerationSpec) -> str:
    """A working title from the spec, e.g. "Tense underscore in D minor"."""
    words = [*spec.moods[:2], spec.genre or "cue"]
    return f"{' '.join(words).capitalize()} in {spec.key} {spec.mode}"


# --- Jobs --------------------------------------------------------------------------------------------------------


def generation_enqueue(job_id) -> None:
    from generation.tasks import generation_run_task

    generation_run_task.delay(job_id=str(job_id))


# Raised by _job_claim while another worker holds a live lease on the job.
JobBusy = library_services.JobBusy


def generation_run(*, job_id) -> None:
    """Compose the job's cues and ingest each with its generation claim. Safe to deliver twice: a finished job is left
    alone, a job with a live lease elsewhere raises JobBusy, and a resumed job continues after its last cue."""
    attempt = _job_claim(job_id)
    if attempt is None:
        return
    job = GenerationJob.objects.select_related("generator", "created_by", "parent").get(pk=job_id)
    try:
        generator = job.generator
        if generator.references_registered_at is None:
            _job_progress(job.pk, attempt, stage="registering training works")
            training_references_register(
                generator=generator,
                progress=lambda done, total: _job_progress(job.pk, attempt, progress=round(0.3 * done / total, 3)),
            )
        model = generator_model(generator)
        done = job.results.count()
        for position in range(done, job.planned):
            if not _job_progress(job.pk, attempt, stage=f"composing {position + 1} of {job.planned}"):
                return  # another worker took the job over
            if not _cue_make(job, generator, model, position, attempt):
                return
            _job_progress(job.pk, attempt, progress=round(0.3 + 0.7 * (position + 1) / job.planned, 3))
        _job_finish(job.pk, attempt, status=GenerationJob.Status.SUCCEEDED, stage="done", progress=1.0)
    except (GenerationError, LibraryError) as exc:
        generation_fail(job_id=job.pk, error=f"{exc.code}: {exc.detail}", attempt=attempt)
    except ComposerError as exc:
        generation_fail(job_id=job.pk, error=f"{exc.code}: {exc.detail}", attempt=attempt)
    except TRANSIENT_ERRORS:
        raise  # the task retries; the next attempt claims the job again
    except Exception:
        log.exception("generation job %s failed unexpectedly", job.pk)
        generation_fail(job_id=job.pk, error=INTERNAL_ERROR, attempt=attempt)
        raise


def _cue_make(job: GenerationJob, generator: Generator, model: MelodyModel, position: int, attempt: int) -> bool:
    """Compose one cue of the job and ingest it with its result row, in one transaction. False when the job is no
    longer this attempt's (another worker took it over)."""
    spec, seed, edit, mix, label = _plan(job, position)
    guarded = compose_unlike(spec, seed=seed, model=model, training=training_index(generator), mix=mix)
    composition = guarded.composition
    parent_result = None if job.parent is None else GenerationResult.objects.get(cue=job.parent)
    title = job.title if job.planned == 1 or job.parent else f"{job.title} (variation {position + 1})"
    parameters = {
        "spec": spec.as_dict(),
        "mix": mix,
        "edit": edit,
        "variation": position + 1 if job.parent is None else None,
        "composition": composition.parameters,
        "memorisation_filter": guarded.report,
    }
    with transaction.atomic():
        if not _job_still_ours(job.pk, attempt):
            return False
        cue = library_services.cue_ingest(
            created_by=job.created_by,
            title=title,
            midi=composition.midi,
            description=_description(spec, label),
            moods=spec.moods,
            generation=library_services.GenerationClaim(
                generator={
                    "name": generator.name,
                    "version": generator.version,
                    "weights_digest": generator.version,
                    "code_version": CODE_VERSION,
                },
                seed=str(seed),
                parameters=parameters,
                training_datasets=training_datasets(generator),
                prompt=job.prompt,
                prompt_commitment=parent_result.prompt_commitment if parent_result else None,
            ),
            parent=job.parent,
            version_label=label,
            licence_constraints=licence_constraints(generator),
        )
        record = cue_generation_record(cue)
        GenerationResult.objects.create(
            job=job,
            position=position,
            cue=cue,
            seed=str(seed),
            edit=edit,
            spec=spec.as_dict(),
            prompt_commitment=record["prompt_commitment"],
            composition={
                "tempo_map": [list(change) for change in composition.tempo_map],
                "meters": [list(meter) for meter in composition.meters],
                "downbeats": list(composition.downbeats),
                "hits": list(composition.hits),
                "sections": list(composition.sections),
                "tracks": [track.__dict__ for track in composition.tracks],
                "duration_seconds": composition.duration_seconds,
                "composed_seed": str(guarded.seed),
            },
        )
    return True


def cue_generation_record(cue: Cue) -> dict:
    """The predicate of the generation record that ingest just queued for ``cue`` (still in the outbox)."""
    from provenance.models import OutboxRecord

    record = OutboxRecord.objects.filter(reference=cue.provenance_reference, kind="generation").first()
    if record is None:
        raise GenerationError("record_missing", f"{cue.code} has no generation record.")
    return record.predicate


def _plan(job: GenerationJob, position: int) -> tuple[GenerationSpec, int, str, str, str]:
    """What cue number ``position`` of a job is: its spec, seed, edit name, mix and version label."""
    spec, seed = spec_from_dict(job.spec), int(job.seed)
    if job.kind == GenerationJob.Kind.COMPOSE:
        return spec, (seed + position) % SEED_SPACE, "", "full", ""
    edit = job.edits[position]
    label, how = EDITS[edit]
    if "seconds" in how:
        try:
            spec = cutdown_spec(spec, how["seconds"])
        except ComposerError as exc:
            raise GenerationError(exc.code, exc.detail) from None
    return spec, seed, edit, how.get("mix", "full"), label


def _description(spec: GenerationSpec, label: str) -> str:
    meter = f"{spec.meter[0]}/{spec.meter[1]}"
    hits = f", {len(spec.hit_points)} hit point(s)" if spec.hit_points else ""
    text = (
        f"Composed by the built-in composer: {spec.key} {spec.mode}, {spec.tempo_bpm:g} bpm, {meter}, "
        f"{spec.duration_seconds:g} s{hits}; {', '.join(spec.ensemble)}."
    )
    return f"{text} Version: {label}." if label else text


def _lease_cutoff():
    return timezone.now() - timedelta(seconds=settings.CUELEDGER_JOB_LEASE_SECONDS)


def _job_claim(job_id) -> int | None:
    """Take a job for this worker (see library.services.lease_claim): the attempt number, or None."""
    return library_services.lease_claim(
        GenerationJob, job_id, state_field="status", fail=generation_fail, stage="starting"
    )


def _job_still_ours(job_id, attempt: int) -> bool:
    return library_services.lease_held(GenerationJob, job_id, attempt)


def _job_update(job_id, **fields) -> None:
    GenerationJob.objects.filter(pk=job_id).update(updated_at=timezone.now(), **fields)


def _job_progress(job_id, attempt: int, **fields) -> bool:
    """Report progress (which renews the lease) only while this attempt still holds the job; False when it does
    not, so that a worker that lost its lease cannot write over the one that took the job over."""
    running = GenerationJob.objects.filter(pk=job_id, attempts=attempt, status=GenerationJob.Status.RUNNING)
    return bool(running.update(updated_at=timezone.now(), **fields))


def _job_finish(job_id, attempt: int, **fields) -> None:
    with transaction.atomic():
        if _job_still_ours(job_id, attempt):
            # The prompt is committed in each cue's record and kept apart from it; the job's copy goes, and so do the
            # prompt's words it did not understand.
            _job_update(job_id, prompt="", ignored=[], finished_at=timezone.now(), error="", **fields)


def generation_fail(*, job_id, error: str, attempt: int | None = None) -> None:
    """Record that a job gave up, with the reason; the cues it made before stay. With ``attempt``, only if that attempt
    still holds the job; without, only if no worker holds a live lease on it."""
    with transaction.atomic():
        job = GenerationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_finished or (attempt is not None and job.attempts != attempt):
            return
        if attempt is None and job.status == GenerationJob.Status.RUNNING and job.updated_at > _lease_cutoff():
            return
        _job_update(
            job.pk,
            status=GenerationJob.Status.FAILED,
            stage="failed",
            error=error,
            prompt="",
            ignored=[],
            finished_at=timezone.now(),
        )
    log.warning("generation job %s failed: %s", job_id, error)


def job_attempt(job_id) -> int | None:
    """The attempt that holds the job now (the number of times it was started)."""
    return GenerationJob.objects.filter(pk=job_id).values_list("attempts", flat=True).first()


def generation_resume_unfinished() -> int:
    """Enqueue every generation job the database says is unfinished and unleased; returns how many."""
    unfinished = list(
        GenerationJob.objects.filter(
            Q(status=GenerationJob.Status.QUEUED)
            | Q(status=GenerationJob.Status.RUNNING, updated_at__lt=_lease_cutoff())
        ).values_list("pk", flat=True)
    )
    for job_id in unfinished:
        generation_enqueue(job_id)
    return len(unfinished)
