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

    midi = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+")
    audio = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    preview = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    waveform = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    # Content Credentials (C2PA) of the files that cannot carry them inside: detached manifest stores.
    midi_credentials = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    preview_credentials = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    # The analysis: what search filters on is in columns, the rest in `analysis_detail`; instruments are rows.
    duration_seconds = models.FloatField(db_index=True)
    tempo_bpm = models.FloatField(db_index=True)
    key = models.CharField(max_length=12, blank=True, db_index=True)
    mode = models.CharField(max_length=5, blank=True)
    analysis_detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at", "-number"]

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
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

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
