"""Checking cues against the reference corpus: the corpus indexes, the check and its report, re-checks, alerts and
the calibration of thresholds.

Indexes are built from the fingerprints stored with the reference works and kept as one file per detector, named by
the corpus digest and written atomically, so a worker that dies while building leaves either no file or a whole one.
A worker keeps the indexes of the newest corpus revision it has seen in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import rfc8785
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from library.errors import LibraryError
from library.fingerprints import ENGINE_VERSION, FingerprintError
from library.fingerprints import acoustic as acoustic_engine
from library.fingerprints import symbolic as symbolic_engine
from library.fingerprints.calibration import threshold_for_fpr
from library.models import (
    Cue,
    ProcessingJob,
    ReferenceCorpus,
    ReferenceWork,
    SimilarityAlert,
    SimilarityCalibration,
    SimilarityReport,
)
from library.music import MusicError
from library.music.midi import midi_read
from library.services import (
    SCRATCH_PREFIX,
    TRANSIENT_ERRORS,
    _job_still_ours,
    _job_update,
    artifact_local_path,
    artifact_open,
    job_claim,
    job_fail,
    similarity_job_create,
)
from provenance import services as provenance_services

log = logging.getLogger(__name__)

DETECTORS = ("acoustic", "symbolic")
ENGINES = {"acoustic": acoustic_engine, "symbolic": symbolic_engine}
INDEX_CLASSES = {"acoustic": acoustic_engine.AcousticIndex, "symbolic": symbolic_engine.SymbolicIndex}
FINGERPRINT_FIELDS = {"acoustic": "acoustic_fingerprint", "symbolic": "symbolic_fingerprint"}
FINGERPRINT_CLASSES = {"acoustic": acoustic_engine.AcousticFingerprint, "symbolic": symbolic_engine.SymbolicFingerprint}
QUERY_LIMIT = 10
CALIBRATION_LIMIT = 50
RECHECK_BATCH = 200
INDEX_BUILD_CHUNK = 500
INDEX_GRACE_SECONDS = 3600
# Temporary audio copies of checks and imports live in the scratch folder under this prefix (see scratch_sweep).


# --- The corpus and its indexes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusVersion:
    """Which corpus a check used: its revision (a counter), how many works, and a digest of their fingerprints."""

    revision: int
    count: int
    digest: str

    def as_dict(self) -> dict:
        return {"revision": self.revision, "count": self.count, "digest": self.digest}


@dataclass(frozen=True)
class CorpusIndexes:
    version: CorpusVersion
    indexes: dict  # detector -> AcousticIndex | SymbolicIndex
    stamp: tuple  # (revision, time of the change): a database restored from a backup does not pass for current


_loaded: CorpusIndexes | None = None
_loading = threading.Lock()


def corpus_revision() -> int:
    return _corpus_stamp()[0]


def _corpus_stamp() -> tuple:
    return ReferenceCorpus.objects.filter(pk=1).values_list("revision", "updated_at").first() or (0, None)


def corpus_version() -> CorpusVersion:
    """The corpus version as it is now, for display; without locks, so a concurrent import may be half counted.
    Checks use the version their indexes were built from (corpus_indexes), which is exact."""
    return _works_version(corpus_revision())[0]


def corpus_indexes(*, heartbeat=None) -> CorpusIndexes:
    """The indexes of the newest corpus: from memory when current, else from their files, else built and saved.
    ``heartbeat`` is called now and then while indexes are built (a job renews its lease with it).

    A check that starts while works are being added uses the corpus as it was at this moment, and its report says
    which revision that was.
    """
    global _loaded
    with _loading:
        if _loaded is not None and _loaded.stamp == _corpus_stamp():
            return _loaded
        _loaded = _indexes_load_or_build(heartbeat or (lambda: None))
        return _loaded


def _indexes_load_or_build(heartbeat) -> CorpusIndexes:
    # The corpus row is locked only while the list of works is read, so that revision, count and digest agree.
    # Works are never changed or deleted, so the fingerprints of the listed ones can be read after the lock is gone.
    with transaction.atomic():
        stamp = _corpus_locked()
        version, ids = _works_version(stamp[0])
    indexes = {}
    for detector in DETECTORS:
        path = _index_path(detector, version.digest)
        index = _index_load(detector, path)  # an index of no works is falsy (len 0), so compare with None
        indexes[detector] = index if index is not None else _index_build(detector, path, ids, heartbeat)
    _indexes_prune(version.digest)
    return CorpusIndexes(version, indexes, stamp)


def _corpus_locked() -> tuple:
    ReferenceCorpus.objects.get_or_create(pk=1)
    corpus = ReferenceCorpus.objects.select_for_update().get(pk=1)
    return corpus.revision, corpus.updated_at


def _works_version(revision: int) -> tuple[CorpusVersion, list[int]]:
    """The version of the works as they stand (count, and a digest over each id and fingerprint digest), and their
    ids in order."""
    digest, ids = hashlib.sha256(), []
    for pk, fingerprint_digest in ReferenceWork.objects.order_by("pk").values_list("pk", "fingerprint_digest"):
        digest.update(f"{pk}:{fingerprint_digest}\n".encode())
        ids.append(pk)
    return CorpusVersion(revision, len(ids), digest.hexdigest()), ids


def _index_path(detector: str, digest: str) -> Path:
    return Path(settings.CUELEDGER_INDEX_DIR) / f"{detector}-{ENGINE_VERSION.replace('/', '-')}-{digest}.index"


def _index_load(detector: str, path: Path):
    if not path.exists():
        return None
    try:
        return INDEX_CLASSES[detector].load(path)
    except FileNotFoundError:  # removed by a worker that has moved on to a newer corpus
        return None
    except FingerprintError as exc:  # a damaged file is rebuilt, never used
        log.warning("index %s is unusable (%s); rebuilding it", path, exc.detail)
        return None


def _index_build(detector: str, path: Path, ids: list[int], heartbeat):
    started = time.monotonic()
    index = INDEX_CLASSES[detector]()
    field = FINGERPRINT_FIELDS[detector]
    for start in range(0, len(ids), INDEX_BUILD_CHUNK):
        heartbeat()
        chunk = ids[start : start + INDEX_BUILD_CHUNK]
        works = ReferenceWork.objects.filter(pk__in=chunk, **{f"{field}__isnull": False}).order_by("pk")
        for pk, data in works.values_list("pk", field):
            index.add(pk, FINGERPRINT_CLASSES[detector].from_bytes(bytes(data)))
    index.freeze()
    heartbeat()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        index.save(Path(temporary))
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    log.info("built the %s index of %d works in %.1f s", detector, len(index), time.monotonic() - started)
    return index


def _indexes_prune(current_digest: str) -> None:
    """Remove index files of older corpora and temporary files left by builders that died."""
    folder = Path(settings.CUELEDGER_INDEX_DIR)
    if not folder.exists():
        return
    # Files younger than this may belong to a worker that has just moved on to a newer corpus than this one.
    cutoff = time.time() - INDEX_GRACE_SECONDS
    for path in folder.iterdir():
        try:
            if current_digest in path.name or path.stat().st_mtime > cutoff:
                continue
            path.unlink()
        except FileNotFoundError:  # removed by another worker meanwhile
            continue


# --- Thresholds ---------------------------------------------------------------------------------------------------


def thresholds_current() -> dict:
    """Per detector, the newest calibrated threshold for this engine, or the engine's default before any."""
    thresholds = {}
    for detector in DETECTORS:
        calibration = (
            SimilarityCalibration.objects.filter(detector=detector, engine_version=ENGINE_VERSION)
            .order_by("-created_at", "-id")
            .first()
        )
        thresholds[detector] = {
            "value": calibration.threshold if calibration else ENGINES[detector].DEFAULT_THRESHOLD,
            "calibration_id": calibration.pk if calibration else None,
        }
    return thresholds


def similarity_calibrate(*, target_fpr: float = 1e-3, created_by: str = "", progress=None) -> list:
    """Measure each detector's scores on unrelated pairs of the corpus (every work queried against all the others)
    and store the threshold that keeps the false-positive rate per pair at or below ``target_fpr``.

    A pair whose match covers at least half of both works is the same work twice (two arrangements of one tune, a
    recording imported twice), not an unrelated pair: such pairs are set aside and counted, and the distribution
    names them, so that legal can merge or remove the duplicates.
    """
    loaded = corpus_indexes()
    count = loaded.version.count
    if count < 2:
        raise LibraryError(
            "corpus_too_small", f"Calibration needs at least two reference works; the corpus has {count}."
        )
    calibrations = []
    for detector in DETECTORS:
        index = loaded.indexes[detector]
        ids = index.reference_ids()
        if len(ids) < 2:
            continue
        scores, same_work = [], []
        for done, reference_id in enumerate(ids, start=1):
            fingerprint = index.fingerprint(reference_id)
            for match in index.query(fingerprint, limit=CALIBRATION_LIMIT, exclude=reference_id):
                if _covers_half_of_both(detector, match, fingerprint, index):
                    same_work.append((reference_id, match.reference_id))
                else:
                    scores.append(match.score)
            if progress:
                progress(detector, done, len(ids))
        pairs = len(ids) * (len(ids) - 1) - len(same_work)
        if pairs < 1:  # every work is another's duplicate: nothing unrelated to measure
            continue
        result = threshold_for_fpr(
            scores,
            pairs=pairs,
            target_fpr=target_fpr,
            fallback=ENGINES[detector].DEFAULT_THRESHOLD,
        )
        result.distribution["same_work_pairs"] = len(same_work)
        unordered = sorted({tuple(sorted(pair)) for pair in same_work})
        result.distribution["same_work_examples"] = [list(pair) for pair in unordered[:20]]
        calibrations.append(
            SimilarityCalibration.objects.create(
                detector=detector,
                threshold=result.threshold,
                target_fpr=target_fpr,
                measured_fpr=result.measured_fpr,
                pairs=result.pairs,
                distribution=result.distribution,
                engine_version=ENGINE_VERSION,
                corpus_revision=loaded.version.revision,
                corpus_count=count,
                corpus_digest=loaded.version.digest,
                created_by=created_by,
            )
        )
    if not calibrations:
        raise LibraryError(
            "corpus_too_small", "No detector has fingerprints of two works yet; import more reference works."
        )
    return calibrations


def _covers_half_of_both(detector: str, match, query, index) -> bool:
    if detector == "symbolic":  # counted in notes of the whole works, not of the one line pair that matched
        larger = max(query.note_count, index.fingerprint(match.reference_id).note_count)
        return match.matched_notes >= 0.5 * larger
    longer = max(query.duration_seconds, index.fingerprint(match.reference_id).duration_seconds)
    return match.matched_seconds >= 0.5 * longer


# --- The check ----------------------------------------------------------------------------------------------------


def cue_similarity_check(*, job_id) -> None:
    """Run a queued similarity job: check its cue and store the report. Safe to deliver twice (see job_claim)."""
    attempt = job_claim(job_id, stage="checking")
    if attempt is None:
        return
    job = ProcessingJob.objects.select_related("cue__midi", "cue__audio").get(pk=job_id)
    try:
        trigger = job.reason or SimilarityReport.Trigger.REQUEST
        similarity_check(cue=job.cue, trigger=trigger, job_id=job.pk, attempt=attempt)
    except LibraryError as exc:
        job_fail(job_id=job.pk, error=f"{exc.code}: {exc.detail}", attempt=attempt)
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        job_fail(job_id=job.pk, error=f"internal_error: {type(exc).__name__}: {exc}", attempt=attempt)
        raise


def similarity_check(*, cue: Cue, trigger: str, job_id=None, attempt: int | None = None) -> SimilarityReport | None:
    """Check a cue with both detectors against the newest corpus and store the report (and its signed ledger
    record). With a job, the report is stored only if that attempt still holds the job; returns None otherwise."""
    started = time.monotonic()
    heartbeat = (lambda: _job_update(job_id)) if job_id is not None else None
    loaded = corpus_indexes(heartbeat=heartbeat)
    thresholds = thresholds_current()
    detectors, found = {}, {}
    prints = _cue_fingerprints(cue)  # a second or two for a long cue: renew the lease before and after
    if heartbeat:
        heartbeat()
    for detector, fingerprint in prints.items():
        if isinstance(fingerprint, FingerprintError):
            detectors[detector] = {"ran": False, "code": fingerprint.code, "detail": fingerprint.detail}
            continue
        detectors[detector] = {"ran": True}
        found[detector] = loaded.indexes[detector].query(fingerprint, limit=QUERY_LIMIT)

    titles = dict(ReferenceWork.objects.filter(pk__in=_ids(found)).values_list("pk", "title"))
    matches, nearest = [], {}
    for detector, results in found.items():
        threshold = thresholds[detector]["value"]
        for match in results:
            if match.score < threshold:
                best = nearest.get(detector)
                if best is None or match.score > best["score"]:
                    nearest[detector] = {"reference_id": match.reference_id, "score": match.score}
                continue
            evidence = match.as_dict()
            evidence.pop("reference_id", None)
            matches.append(
                {
                    "reference": {"id": match.reference_id, "title": titles.get(match.reference_id, "")},
                    "detector": detector,
                    "score": match.score,
                    "threshold": threshold,
                    "evidence": evidence,
                }
            )
    matches.sort(key=lambda m: (m["detector"], -m["score"]))
    verdict = SimilarityReport.Verdict.FLAG if matches else SimilarityReport.Verdict.PASS

    with transaction.atomic():
        if job_id is not None and not _job_still_ours(job_id, attempt):
            return None
        # Checks of one cue store their reports one at a time, so each sees the report before it.
        Cue.objects.select_for_update().filter(pk=cue.pk).first()
        previous = cue.similarity_reports.order_by("-corpus_revision", "-created_at").first()
        report = SimilarityReport.objects.create(
            cue=cue,
            verdict=verdict,
            trigger=trigger,
            engine_version=ENGINE_VERSION,
            corpus_revision=loaded.version.revision,
            corpus_count=loaded.version.count,
            corpus_digest=loaded.version.digest,
            thresholds={detector: value["value"] for detector, value in thresholds.items()},
            detectors=detectors,
            matches=matches,
            nearest=nearest,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        subjects = [(f"{cue.code}.mid", cue.midi_id)] if cue.midi_id is not None else []
        if cue.audio_id is not None:  # what the acoustic detector heard
            subjects.append((f"{cue.code}.flac", cue.audio_id))
        provenance_services.record_enqueue(
            kind="similarity", reference=cue.provenance_reference, subjects=subjects, predicate=_record(cue, report)
        )
        _alert_if_new(cue, report, previous)
        if corpus_revision() > loaded.version.revision:
            # Works were added while this check ran: the re-check they set off skipped this cue as busy.
            similarity_job_create(cue_id=cue.pk, trigger=SimilarityReport.Trigger.REFERENCES)
        if job_id is not None:
            _job_update(
                job_id,
                state=ProcessingJob.State.SUCCEEDED,
                stage="done",
                progress=1.0,
                error="",
                finished_at=timezone.now(),
            )
    return report


def _cue_fingerprints(cue: Cue) -> dict:
    """Each detector's fingerprint of the cue, or the FingerprintError saying why there is none."""
    prints: dict = {}
    if cue.audio_id is None:
        prints["acoustic"] = FingerprintError("audio_missing", "The cue has no rendered audio yet.")
    else:
        with artifact_local_path(cue.audio) as flac:
            prints["acoustic"] = _or_error(acoustic_engine.acoustic_fingerprint_file, flac)
    if cue.midi_id is None:
        prints["symbolic"] = FingerprintError("midi_missing", "The cue came as a recording alone, without MIDI.")
        return prints
    with artifact_open(cue.midi) as handle:
        midi = handle.read()
    try:
        score = midi_read(midi, max_duration_seconds=float("inf"))
    except MusicError as exc:
        raise LibraryError(exc.code, exc.detail) from None
    prints["symbolic"] = _or_error(symbolic_engine.symbolic_fingerprint, score)
    return prints


def _or_error(make, argument):
    try:
        return make(argument)
    except FingerprintError as exc:
        return exc


def _ids(found: dict) -> set[int]:
    return {match.reference_id for results in found.values() for match in results}


def _record(cue: Cue, report: SimilarityReport) -> dict:
    """The signed similarity record: the verdict and a summary of each match, with a digest of its full evidence
    (kept in the report) so that the evidence cannot be changed without the ledger showing it."""
    return {
        "cue": {"id": str(cue.pk), "code": cue.code, "title": cue.title},
        "report_id": str(report.pk),
        "verdict": report.verdict,
        "trigger": report.trigger,
        "detectors": {
            detector: {"ran": state["ran"], **({"code": state["code"]} if not state["ran"] else {})}
            for detector, state in report.detectors.items()
        },
        "engine_version": report.engine_version,
        "corpus_version": report.corpus_version,
        "thresholds": report.thresholds,
        "matches": [
            {
                "reference_id": match["reference"]["id"],
                "reference_title": match["reference"]["title"][:300],
                "detector": match["detector"],
                "score": match["score"],
                "evidence_digest": hashlib.sha256(rfc8785.dumps(match["evidence"])).hexdigest(),
            }
            for match in report.matches
        ],
    }


def _alert_if_new(cue: Cue, report: SimilarityReport, previous: SimilarityReport | None) -> None:
    """A match found against a grown corpus that the cue's earlier reports did not have, and that no alert has
    named yet, is an alert for legal; whatever set off the check. A first check after works were added counts too:
    the cue was in the catalog before them."""
    grown = previous.corpus_revision < report.corpus_revision if previous else report.trigger == "references"
    if not grown:
        return
    matched = {match["reference"]["id"] for match in report.matches}
    known = {match["reference"]["id"] for match in previous.matches} if previous else set()
    alerted = set(
        SimilarityAlert.references.through.objects.filter(similarityalert__cue=cue).values_list(
            "referencework_id", flat=True
        )
    )
    new = matched - known - alerted
    if new:
        alert = SimilarityAlert.objects.create(cue=cue, report=report)
        alert.references.set(ReferenceWork.objects.filter(pk__in=new))


# --- Re-checks ----------------------------------------------------------------------------------------------------


def similarity_recheck(*, batch: int = RECHECK_BATCH) -> tuple[int, bool]:
    """Queue a check of up to ``batch`` ready cues that have not been checked against the current corpus by this
    engine, and have no check queued, running or failed since the corpus last changed (a cue whose check fails is
    not retried in a loop; the next change of the corpus tries it again). Returns how many were queued and whether
    more remain (the task then runs again)."""
    revision, changed_at = _corpus_stamp()
    checked = SimilarityReport.objects.filter(corpus_revision__gte=revision, engine_version=ENGINE_VERSION)
    tried = ProcessingJob.objects.filter(kind=ProcessingJob.Kind.SIMILARITY)
    if changed_at is not None:
        tried = tried.filter(created_at__gte=changed_at)
    due = list(
        Cue.objects.filter(status=Cue.Status.READY)
        .exclude(pk__in=checked.values("cue_id"))
        .exclude(pk__in=tried.values("cue_id"))
        .order_by("created_at")
        .values_list("pk", flat=True)[: batch + 1]
    )
    with transaction.atomic():
        for cue_id in due[:batch]:
            similarity_job_create(cue_id=cue_id, trigger=SimilarityReport.Trigger.REFERENCES)
    return min(len(due), batch), len(due) > batch


def alert_acknowledge(*, alert: SimilarityAlert, user) -> SimilarityAlert:
    if alert.acknowledged_at is None:
        alert.acknowledged_by, alert.acknowledged_at = user, timezone.now()
        alert.save(update_fields=["acknowledged_by", "acknowledged_at"])
    return alert


def scratch_sweep(*, older_than_seconds: int = 3600) -> int:
    """Remove the temporary audio copies of checks and imports whose process was killed; returns how many."""
    folder = Path(settings.CUELEDGER_SCRATCH_DIR)
    if not folder.exists():
        return 0
    cutoff, removed = time.time() - older_than_seconds, 0
    for path in folder.glob(f"{SCRATCH_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed
