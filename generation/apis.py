"""Generation's REST API: generation jobs, versions of generated cues, model cards, and imports of outside cues."""

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cueledger.api import upload_content
from cueledger.roles import ADMIN, LEGAL, PRODUCER, has_role
from generation import services
from generation.errors import GenerationError
from generation.models import GenerationJob, Generator
from generation.selectors import generation_job_get_for_user, generation_jobs_for_user
from library import services as library_services
from library.apis import CueOutputSerializer, LicenceConstraintsSerializer
from library.errors import LibraryError
from library.models import Cue
from library.selectors import cue_get_for_user, cue_list_for_user

# The request keys that are not spec fields; every other key is handed to the prompt parser as a spec field.
_CONTROL_KEYS = ("prompt", "seed", "variations", "title")


def _producer_required(user, action: str) -> None:
    if not has_role(user, PRODUCER, ADMIN):
        raise GenerationError("permission_denied", f"Only producers and admins {action}.", http_status=403)


class GeneratorRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField(help_text="SHA-256 of the model file")


class GeneratedCueSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="cue.id")
    code = serializers.CharField(source="cue.code")
    title = serializers.CharField(source="cue.title")
    status = serializers.CharField(source="cue.status", help_text="The cue's rendering and checks: see the cue")
    position = serializers.IntegerField(help_text="0-based: variation n+1, or the n-th edit asked for")
    seed = serializers.CharField()
    edit = serializers.CharField(help_text="The version made (cut-down or mix); empty for a variation")
    url = serializers.SerializerMethodField()

    def get_url(self, result) -> str:
        return self.context["request"].build_absolute_uri(reverse("cue-detail", kwargs={"cue_id": result.cue_id}))


class GenerationJobSerializer(serializers.ModelSerializer):
    generator = GeneratorRefSerializer()
    created_by = serializers.CharField(source="created_by.username")
    parent = serializers.UUIDField(source="parent_id", allow_null=True, help_text="The cue versions are made of")
    cue_ids = serializers.SerializerMethodField(help_text="The cues made so far, in order")
    cues = GeneratedCueSerializer(source="results", many=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = GenerationJob
        fields = [
            "id",
            "url",
            "kind",
            "status",
            "progress",
            "stage",
            "error",
            "title",
            "spec",
            "ignored",
            "defaulted",
            "seed",
            "variations",
            "parent",
            "edits",
            "generator",
            "cue_ids",
            "cues",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "attempts",
        ]

    def get_cue_ids(self, job) -> list[str]:
        return [str(result.cue_id) for result in job.results.all()]

    def get_url(self, job) -> str:
        return self.context["request"].build_absolute_uri(reverse("generation-detail", kwargs={"job_id": job.pk}))


def _job_response(request, job: GenerationJob, code: int = status.HTTP_200_OK) -> Response:
    job = generation_job_get_for_user(request.user, job.pk)
    return Response(GenerationJobSerializer(job, context={"request": request}).data, status=code)


class GenerationListCreateApi(generics.ListAPIView):
    serializer_class = GenerationJobSerializer
    parser_classes = [JSONParser]

    class GenerationInputSerializer(serializers.Serializer):
        """Documents the request; the view reads it itself so that unknown spec fields are reported by name."""

        prompt = serializers.CharField(
            required=False,
            help_text='e.g. "tense orchestral underscore, 120 bpm, D minor, 6/8, 1:30, build to a hit at '
            '00:01:05:12 @ 24 fps, end soft". Confidential: kept apart from the ledger, which holds a commitment.',
        )
        seed = serializers.CharField(required=False, help_text="Decimal digits as a string, below 2**64")
        variations = serializers.IntegerField(required=False, min_value=1, max_value=services.MAX_VARIATIONS)
        title = serializers.CharField(required=False, max_length=200)
        moods = serializers.ListField(child=serializers.CharField(), required=False)
        genre = serializers.CharField(required=False)
        ensemble = serializers.ListField(child=serializers.CharField(), required=False)
        tempo_bpm = serializers.FloatField(required=False)
        key = serializers.CharField(required=False, help_text='"D minor", or a tonic with `mode`')
        mode = serializers.ChoiceField(choices=["major", "minor"], required=False)
        meter = serializers.CharField(required=False, help_text='e.g. "6/8"')
        duration_seconds = serializers.FloatField(required=False)
        duration = serializers.CharField(required=False, help_text='e.g. "1:30"')
        hit_points = serializers.ListField(
            child=serializers.JSONField(),
            required=False,
            help_text='"00:01:05:12 @ 24 fps", {"timecode": "00:01:05:12", "fps": "24"} or {"time_seconds": 65.5}',
        )
        arc = serializers.ListField(
            child=serializers.JSONField(), required=False, help_text='[{"time_seconds": 0, "level": 0.3}, ...]'
        )

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return GenerationJob.objects.none()
        return generation_jobs_for_user(self.request.user)

    @extend_schema(summary="Your generation jobs, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=GenerationInputSerializer,
        responses={202: GenerationJobSerializer},
        summary="Compose cues from a prompt and/or spec fields (producers and admins); runs in the background",
    )
    def post(self, request):
        _producer_required(request.user, "generate cues")
        if not isinstance(request.data, dict):
            raise GenerationError("malformed_request", "The body must be a JSON object.")
        fields = {key: value for key, value in request.data.items() if key not in _CONTROL_KEYS}
        prompt = request.data.get("prompt")
        job = services.generation_request(
            created_by=request.user,
            prompt=prompt,
            fields=fields or None,
            seed=request.data.get("seed"),
            variations=request.data.get("variations", 1),
            title=_text(request.data.get("title", ""), "title"),
        )
        return _job_response(request, job, status.HTTP_202_ACCEPTED)


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise GenerationError("field_invalid", f"{field} must be a string.")
    return value


class GenerationDetailApi(APIView):
    @extend_schema(responses=GenerationJobSerializer, summary="A generation job: status, progress, spec and cues")
    def get(self, request, job_id):
        return _job_response(request, generation_job_get_for_user(request.user, job_id))


class CueVersionsApi(generics.ListAPIView):
    serializer_class = CueOutputSerializer
    parser_classes = [JSONParser]

    class VersionsInputSerializer(serializers.Serializer):
        edits = serializers.ListField(
            child=serializers.ChoiceField(choices=list(services.EDITS)),
            help_text="cutdown-15, cutdown-30, cutdown-60 (cut-downs that end properly), no-percussion, underscore",
        )

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Cue.objects.none()
        cue = cue_get_for_user(self.request.user, self.kwargs["cue_id"])
        visible = cue_list_for_user(self.request.user).filter(parent=cue)
        return visible.prefetch_related("moods", "instruments", "jobs").order_by("number")

    @extend_schema(summary="The versions made of a cue that you may see (cut-downs, alternate mixes)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=VersionsInputSerializer,
        responses={202: GenerationJobSerializer},
        summary="Make versions of a generated cue: cut-downs and alternate mixes (its producer, or an admin)",
    )
    def post(self, request, cue_id):
        _producer_required(request.user, "make versions of cues")
        cue = cue_get_for_user(request.user, cue_id)
        if not isinstance(request.data, dict):
            raise GenerationError("malformed_request", "The body must be a JSON object.")
        unknown = sorted(set(request.data) - {"edits"})
        if unknown:
            raise GenerationError("field_unknown", f"{unknown[0]!r} is not a field here; send only edits.")
        edits = request.data.get("edits")
        if not isinstance(edits, list) or not all(isinstance(edit, str) for edit in edits):
            raise GenerationError("edits_invalid", f"edits must be a list of names from: {', '.join(services.EDITS)}.")
        job = services.versions_request(created_by=request.user, cue=cue, edits=edits)
        return _job_response(request, job, status.HTTP_202_ACCEPTED)


# --- Model cards -------------------------------------------------------------------------------------------------


class CollectionSerializer(serializers.Serializer):
    name = serializers.CharField()
    license = serializers.CharField(help_text="SPDX identifier or LicenseRef-...")
    commercial_use = serializers.BooleanField(allow_null=True, help_text="null: the terms do not say")
    statement = serializers.CharField(help_text="What the collection's own files say about their terms")
    source = serializers.CharField(help_text="Where that statement is, in music21's corpus")
    work_count = serializers.IntegerField()
    digest = serializers.CharField()


class TrainingWorkSerializer(serializers.Serializer):
    corpus_path = serializers.CharField()
    number = serializers.IntegerField(allow_null=True, help_text="The tune's number within a multi-tune file")
    collection = serializers.CharField()
    title = serializers.CharField()
    sha256 = serializers.CharField(help_text="Of the corpus file")
    license = serializers.CharField()


class GeneratorSerializer(serializers.ModelSerializer):
    model_sha256 = serializers.CharField(source="model_file_id")
    manifest_sha256 = serializers.CharField(source="manifest_file_id")
    music21_version = serializers.CharField(source="manifest.music21_version", default="")
    collections = CollectionSerializer(source="manifest.collections", many=True)
    works = TrainingWorkSerializer(source="manifest.works", many=True)
    licence_constraints = serializers.SerializerMethodField()
    memorisation_guard = serializers.SerializerMethodField()

    class Meta:
        model = Generator
        fields = [
            "name",
            "version",
            "code_version",
            "is_default",
            "created_at",
            "model_sha256",
            "manifest_sha256",
            "music21_version",
            "licence_constraints",
            "memorisation_guard",
            "collections",
            "works",
        ]

    @extend_schema_field(LicenceConstraintsSerializer)
    def get_licence_constraints(self, generator) -> dict:
        return services.licence_constraints(generator)

    @extend_schema_field(
        inline_serializer(
            "MemorisationGuard",
            {
                "training_works_registered": serializers.IntegerField(
                    help_text="Training works registered as reference works: every cue is checked against them"
                ),
                "registered_at": serializers.DateTimeField(allow_null=True),
            },
        )
    )
    def get_memorisation_guard(self, generator) -> dict:
        return {
            "training_works_registered": generator.training_references.count(),
            "registered_at": generator.references_registered_at,
        }


class GeneratorListApi(generics.ListAPIView):
    """Model cards: each version of the built-in composer with its training works and their licences."""

    serializer_class = GeneratorSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no database to install into
            return Generator.objects.none()
        if not has_role(self.request.user, PRODUCER, LEGAL, ADMIN):
            # As with provenance: supervisors see what a cue may be used for, not the models and data behind it.
            raise GenerationError(
                "permission_denied", "Model cards are for producers, legal and admins.", http_status=403
            )
        services.generator_default()  # the shipped model is on the card before anyone generates
        return Generator.objects.select_related("model_file", "manifest_file")

    @extend_schema(
        summary="Model cards of the built-in composer: training works, licences, the memorisation guard (producers, "
        "legal and admins)"
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- Imports -----------------------------------------------------------------------------------------------------


class ImportApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    class ImportInputSerializer(serializers.Serializer):
        midi = serializers.FileField(required=False, help_text="A Standard MIDI File (type 0 or 1)")
        audio = serializers.FileField(
            required=False,
            help_text="A recording (WAV, FLAC, Ogg Vorbis or MP3). With MIDI too, the recording is the cue's sound "
            "and the MIDI its notes (analysis, melody comparison).",
        )
        title = serializers.CharField(max_length=200)
        description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
        moods = serializers.ListField(child=serializers.CharField(max_length=200), required=False, default=list)
        tool = serializers.CharField(max_length=200, help_text="The tool that made the cue, as the uploader says")
        model = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        model_version = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        terms_url = serializers.URLField(max_length=2000, required=False, allow_blank=True, default="")
        training_data_statement = serializers.CharField(max_length=20_000, required=False, allow_blank=True, default="")

    @extend_schema(
        request={"multipart/form-data": ImportInputSerializer},
        responses={201: CueOutputSerializer},
        summary="Import a cue made elsewhere, with what the uploader claims about how it was made (kept as a claim)",
    )
    def post(self, request):
        _producer_required(request.user, "import cues")
        data = self.ImportInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        midi, audio = values.get("midi"), values.get("audio")
        if midi is None and audio is None:
            raise LibraryError("file_required", "Send a MIDI file (midi), a recording (audio), or both.")
        limit = settings.CUELEDGER_MAX_UPLOAD_BYTES
        if midi is not None and midi.size > limit:
            raise LibraryError("file_too_large", f"The MIDI file is {midi.size:,} bytes; the limit is {limit:,}.")
        claimed = {
            key: values[key].strip()
            for key in ("tool", "model", "model_version", "terms_url", "training_data_statement")
            if values[key].strip()
        }
        cue = library_services.cue_ingest(
            created_by=request.user,
            title=values["title"],
            description=values["description"],
            moods=[tag for field in values["moods"] for tag in field.split(",") if tag.strip()],
            midi=midi.read() if midi is not None else None,
            audio=upload_content(audio) if audio is not None else None,
            claimed_origin=claimed,
        )
        cue = cue_get_for_user(request.user, cue.pk)
        return Response(CueOutputSerializer(cue, context={"request": request}).data, status=status.HTTP_201_CREATED)
