"""The catalog: content-addressed artifacts, cues with their analysis, and the background jobs that process them."""

import uuid

from django.conf import settings
from django.db import models


class Artifact(models.Model):
    """A file kept once under the SHA-256 of its bytes, whoever uploaded or produced it and however often."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    media_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.media_type}, {self.size} bytes)"

    @property
    def storage_name(self) -> str:
        return artifact_storage_name(self.sha256)


def artifact_storage_name(sha256: str) -> str:
    return f"artifacts/{sha256[:2]}/{sha256[2:4]}/{sha256}"


class Mood(models.Model):
    name = models.SlugField(max_length=40, unique=True, allow_unicode=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Cue(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft (processing failed; see processing_error)"
        ANALYSING = "analysing", "Analysing (rendering and checks under way)"
        READY = "ready", "Ready"

    class Source(models.TextChoices):
        GENERATED = "generated", "Generated here"
        IMPORTED = "imported", "Imported"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.PositiveIntegerField(unique=True, editable=False)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    moods = models.ManyToManyField(Mood, blank=True, related_name="cues")
    status = models.CharField(max_length=20, choices=Status, default=Status.ANALYSING, db_index=True)
    source = models.CharField(max_length=20, choices=Source, default=Source.IMPORTED)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="cues")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    processing_error = models.TextField(blank=True)
    # A version of another cue (a cut-down, an alternate mix): its own artifacts and records, linked to the parent.
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, related_name="versions", null=True, blank=True, editable=False
    )
    version_label = models.CharField(max_length=60, blank=True, help_text='e.g. "30 s cut-down", "no percussion"')
    # What the licences of the generating model's training data allow: what the release gate reads.
    licence_constraints = models.JSONField(default=dict, blank=True)

    # An imported cue may come as MIDI, as a recording (``source_audio``, kept as uploaded), or both; a generated cue
    # always has MIDI. ``audio`` is the FLAC master: rendered from the MIDI, or transcoded from the recording.
    midi = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    source_audio = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    audio = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    preview = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    waveform = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    # Content Credentials (C2PA) of the files that cannot carry them inside: detached manifest stores.
    midi_credentials = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    preview_credentials = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    # The analysis: what search filters on is in columns, the rest in `analysis_detail`; instruments are rows.
    duration_seconds = models.FloatField(db_index=True)
    tempo_bpm = models.FloatField(db_index=True, null=True, blank=True, help_text="Unknown for a recording alone")
    key = models.CharField(max_length=12, blank=True, db_index=True)
    mode = models.CharField(max_length=5, blank=True)
    analysis_detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-number"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(midi__isnull=False) | models.Q(source_audio__isnull=False), name="cue_has_a_file"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.code} {self.title}"

    @property
    def code(self) -> str:
        return f"CUE-{self.number:06d}"

    @property
    def provenance_reference(self) -> str:
        """How the ledger's records name this cue (its artifacts may be shared with other cues)."""
        return f"cue:{self.pk}"


class CueInstrument(models.Model):
    """One General MIDI instrument heard in a cue (parts with the same program are counted together)."""

    cue = models.ForeignKey(Cue, on_delete=models.CASCADE, related_name="instruments")
    program = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=60)
    family = models.CharField(max_length=30, db_index=True)
    is_drum = models.BooleanField(default=False)
    note_count = models.PositiveIntegerField()

    class Meta:
        ordering = ["is_drum", "program"]
        constraints = [
            models.UniqueConstraint(fields=["cue", "is_drum", "program"], name="cue_instrument_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class ProcessingJob(models.Model):
    """One piece of background work on a cue, with its progress: what the API shows while a cue is analysing."""

    class Kind(models.TextChoices):
        RENDER = "render", "Render audio"
        SIMILARITY = "similarity", "Similarity check"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cue = models.ForeignKey(Cue, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=20, choices=Kind)
    state = models.CharField(max_length=20, choices=State, default=State.QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    stage = models.CharField(max_length=100, blank=True)
    reason = models.CharField(max_length=20, blank=True, help_text="Why the job was queued, e.g. what set off a check")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One waiting job of a kind per cue: a second request while one waits would only repeat its work.
            models.UniqueConstraint(
                fields=["cue", "kind"], condition=models.Q(state="queued"), name="one_queued_job_per_cue_and_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.cue_id} {self.state}"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)


class Sequence(models.Model):
    """A named counter for human-readable numbers (CUE-000123): incremented with an UPDATE, so that concurrent
    writers on PostgreSQL and SQLite alike queue on the row instead of reading the same value."""

    name = models.CharField(max_length=40, primary_key=True)
    value = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


# --- Reference works and similarity checks -----------------------------------------------------------------------


class ReferenceWork(models.Model):
    """A protected work that cues are checked against: a composition (MIDI), a recording (audio), or both.

    Its fingerprints are made once, when it is imported, and kept here so that indexes can be rebuilt at any time.
    """

    title = models.CharField(max_length=300)
    composers = models.JSONField(default=list, help_text="Names, in the order given")
    rightsholders = models.JSONField(default=list)
    iswc = models.CharField("ISWC", max_length=15, blank=True, db_index=True, help_text="e.g. T-034.524.680-1")
    isrc = models.CharField("ISRC", max_length=12, blank=True, db_index=True, help_text="e.g. USRC17607839")
    source = models.CharField(max_length=500, blank=True, help_text="Where the work or its files came from")
    notes = models.TextField(blank=True)
    midi = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    audio = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    # Fingerprints in the engine's own byte format (library.fingerprints); empty when the work has no such content,
    # e.g. no acoustic fingerprint for silent audio, no symbolic one for a drum track.
    acoustic_fingerprint = models.BinaryField(null=True, blank=True)
    symbolic_fingerprint = models.BinaryField(null=True, blank=True)
    fingerprint_digest = models.CharField(max_length=64, help_text="SHA-256 over both fingerprints")
    engine_version = models.CharField(max_length=60)
    fingerprint_notes = models.JSONField(default=dict, help_text="Why a fingerprint is missing, by detector")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(midi__isnull=False) | models.Q(audio__isnull=False),
                name="reference_work_has_a_file",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class ReferenceCorpus(models.Model):
    """The one row that counts changes to the reference corpus. Adding works bumps ``revision`` in the same
    transaction, so a worker can tell cheaply whether its index is current, and adds queue on this row."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    revision = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"reference corpus revision {self.revision}"


class SimilarityCalibration(models.Model):
    """A threshold chosen from the score distribution of unrelated pairs of the reference corpus."""

    class Detector(models.TextChoices):
        ACOUSTIC = "acoustic", "Acoustic (copied recordings)"
        SYMBOLIC = "symbolic", "Symbolic (copied compositions)"

    detector = models.CharField(max_length=20, choices=Detector)
    threshold = models.FloatField()
    target_fpr = models.FloatField(help_text="False-positive rate per pair the threshold was chosen for")
    measured_fpr = models.FloatField(help_text="Share of the unrelated pairs at or above the threshold")
    pairs = models.PositiveBigIntegerField(help_text="Unrelated pairs measured")
    distribution = models.JSONField(help_text="Histogram and quantiles of the pairs' scores")
    engine_version = models.CharField(max_length=60)
    corpus_revision = models.PositiveBigIntegerField()
    corpus_count = models.PositiveIntegerField()
    corpus_digest = models.CharField(max_length=64)
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.detector} >= {self.threshold:.4g}"


class SimilarityReport(models.Model):
    """The result of one check of a cue against the reference corpus. Never changed: a new check is a new report."""

    class Verdict(models.TextChoices):
        PASS = "pass", "Pass"
        FLAG = "flag", "Flag"

    class Trigger(models.TextChoices):
        INGEST = "ingest", "After rendering"
        REFERENCES = "references", "Reference works were added"
        REQUEST = "request", "Requested"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cue = models.ForeignKey(Cue, on_delete=models.CASCADE, related_name="similarity_reports")
    verdict = models.CharField(max_length=10, choices=Verdict)
    trigger = models.CharField(max_length=20, choices=Trigger)
    engine_version = models.CharField(max_length=60)
    corpus_revision = models.PositiveBigIntegerField()
    corpus_count = models.PositiveIntegerField()
    corpus_digest = models.CharField(max_length=64)
    thresholds = models.JSONField()
    detectors = models.JSONField(help_text="Per detector: whether it ran, and if not, the code saying why")
    matches = models.JSONField(help_text="Every match at or above its detector's threshold, best first, with evidence")
    nearest = models.JSONField(default=dict, help_text="Per detector, the best score below the threshold")
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-corpus_revision", "-created_at"]
        indexes = [models.Index(fields=["cue", "corpus_revision"], name="report_cue_revision")]

    def __str__(self) -> str:
        return f"{self.cue_id} {self.verdict} @ corpus {self.corpus_revision}"

    @property
    def corpus_version(self) -> dict:
        return {"revision": self.corpus_revision, "count": self.corpus_count, "digest": self.corpus_digest}


class SimilarityAlert(models.Model):
    """A re-check after reference works were added found a match that the cue's earlier report did not have."""

    cue = models.ForeignKey(Cue, on_delete=models.CASCADE, related_name="similarity_alerts")
    report = models.ForeignKey(SimilarityReport, on_delete=models.CASCADE, related_name="alerts")
    references = models.ManyToManyField(ReferenceWork, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"alert on {self.cue_id} ({self.created_at:%Y-%m-%d})"
