"""Generation: the built-in composer's models (versions) and the jobs that turn prompts into cues."""

import uuid

from django.conf import settings
from django.db import models

from library.models import Artifact, Cue


class Generator(models.Model):
    """One version of the built-in composer's model: its file, its training manifest and what their licences allow.

    The version is the SHA-256 of the model file, so the same training gives the same version wherever it runs.
    """

    version = models.CharField(max_length=64, primary_key=True, help_text="SHA-256 of the model file")
    name = models.CharField(max_length=100)
    code_version = models.CharField(max_length=60, help_text="The composer code that turns the model into MIDI")
    model_file = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+")
    manifest_file = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="+")
    manifest = models.JSONField(help_text="The training manifest: every work used and each collection's licence")
    is_default = models.BooleanField(default=False)
    # Set once every training work is a reference work, so that generated cues are checked against them.
    references_registered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-is_default", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True), name="one_default")
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version[:12]}"


class TrainingReference(models.Model):
    """A training work of a generator registered as a reference work (the memorisation guard)."""

    generator = models.ForeignKey(Generator, on_delete=models.CASCADE, related_name="training_references")
    work_key = models.CharField(max_length=300, help_text="corpus path#number, as in the manifest")
    reference = models.ForeignKey("library.ReferenceWork", on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["generator", "work_key"], name="training_reference_unique")]

    def __str__(self) -> str:
        return self.work_key


class GenerationJob(models.Model):
    """A request to compose: N variations of a spec, or versions (cut-downs, mixes) of an earlier generated cue."""

    class Kind(models.TextChoices):
        COMPOSE = "compose", "Compose from a prompt"
        VERSIONS = "versions", "Versions of a cue"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=20, choices=Kind, default=Kind.COMPOSE)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    generator = models.ForeignKey(Generator, on_delete=models.PROTECT, related_name="jobs")
    title = models.CharField(max_length=200)
    # The prompt waits here only until the job has committed it for each cue (it is confidential); then it is cleared.
    prompt = models.TextField(blank=True)
    spec = models.JSONField(help_text="The normalised spec")
    ignored = models.JSONField(default=list, help_text="Words of the prompt that were not understood")
    defaulted = models.JSONField(default=list, help_text="Spec fields filled with defaults")
    seed = models.CharField(max_length=20, help_text="Decimal; variation n uses seed + n (mod 2**64)")
    variations = models.PositiveSmallIntegerField(default=1)
    parent = models.ForeignKey(Cue, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    edits = models.JSONField(default=list, help_text='Versions to make of the parent, e.g. ["cutdown-30"]')
    status = models.CharField(max_length=20, choices=Status, default=Status.QUEUED, db_index=True)
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
        return f"{self.kind} {self.pk} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def planned(self) -> int:
        return len(self.edits) if self.kind == self.Kind.VERSIONS else self.variations


class GenerationResult(models.Model):
    """One cue a job made, in the order made: variation n, or the version named by ``edit``."""

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="results")
    position = models.PositiveSmallIntegerField()
    cue = models.OneToOneField(Cue, on_delete=models.PROTECT, related_name="generation")
    seed = models.CharField(max_length=20)
    edit = models.CharField(max_length=30, blank=True)
    spec = models.JSONField(help_text="The spec this cue was composed from (a cut-down's is shorter)")
    prompt_commitment = models.JSONField(help_text="As in the cue's generation record; versions reuse it")
    composition = models.JSONField(help_text="Tempo map, downbeats, hits and sections as composed")

    class Meta:
        ordering = ["job", "position"]
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="generation_result_unique")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.position}"
