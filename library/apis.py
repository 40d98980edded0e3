"""The catalog's REST API: thin views that validate input, call one service or selector, and serialise."""

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cueledger.roles import ADMIN, PRODUCER, has_role
from library import services
from library.errors import LibraryError
from library.filters import CueFilter
from library.models import Artifact, Cue, CueInstrument, ProcessingJob
from library.selectors import cue_auditable_by, cue_get_for_user, cue_list_for_user
from provenance import services as provenance_services
from provenance.apis import CheckpointSerializer, EntrySerializer, checkpoint_data, entry_data
from provenance.ledger import dump_bundle
from provenance.selectors import entries_for, prompts_for


class ArtifactSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    media_type = serializers.CharField()
    size = serializers.IntegerField()
    url = serializers.URLField()


class InstrumentSerializer(serializers.ModelSerializer):
    class Meta:
        model = CueInstrument
        fields = ["program", "name", "family", "is_drum", "note_count"]


class TempoChangeSerializer(serializers.Serializer):
    time_seconds = serializers.FloatField()
    bpm = serializers.FloatField()


class PitchRangeSerializer(serializers.Serializer):
    lowest = serializers.IntegerField(help_text="MIDI note number")
    highest = serializers.IntegerField()
    lowest_name = serializers.CharField(help_text="Scientific pitch notation, C4 = MIDI 60")
    highest_name = serializers.CharField()


class AnalysisSerializer(serializers.Serializer):
    duration_seconds = serializers.FloatField()
    tempo_bpm = serializers.FloatField(
        allow_null=True, help_text="The tempo in force for the longest time; null for a recording without MIDI"
    )
    analysed_from = serializers.CharField(
        source="analysis_detail.analysed_from", default="midi", help_text="midi, or audio for a recording alone"
    )
    tempo_map = TempoChangeSerializer(many=True, source="analysis_detail.tempo_map")
    time_signatures = serializers.ListField(child=serializers.CharField(), source="analysis_detail.time_signatures")
    key = serializers.CharField(allow_null=True, help_text='e.g. "A minor"; null when no key can be told')
    mode = serializers.CharField(allow_null=True)
    key_source = serializers.CharField(
        allow_null=True,
        source="analysis_detail.key_source",
        help_text="declared (a key signature in the file) or estimated",
    )
    key_confidence = serializers.FloatField(allow_null=True, source="analysis_detail.key_confidence")
    instruments = InstrumentSerializer(many=True)
    note_count = serializers.IntegerField(source="analysis_detail.note_count")
    pitch_range = PitchRangeSerializer(allow_null=True, source="analysis_detail.pitch_range")
    energy = serializers.ListField(
        child=serializers.FloatField(),
        source="analysis_detail.energy",
        help_text="Per second: note onsets x mean velocity (velocities summed, as shares of 127)",
    )

    def to_representation(self, cue):
        data = super().to_representation(cue)
        data["key"], data["mode"] = cue.key or None, cue.mode or None
        return data


class ProcessingSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProcessingJob
        fields = ["kind", "state", "progress", "stage", "attempts", "error", "created_at", "updated_at"]


class CueArtifactsSerializer(serializers.Serializer):
    midi = serializers.SerializerMethodField(help_text="null for a cue imported as a recording alone")
    source_audio = serializers.SerializerMethodField(help_text="The recording as uploaded, for imported recordings")
    audio = serializers.SerializerMethodField(help_text="FLAC, 44.1 kHz 16-bit stereo")
    preview = serializers.SerializerMethodField(help_text="Ogg Vorbis")
    waveform = serializers.SerializerMethodField(help_text="Peaks in the audiowaveform JSON format, version 2")
    midi_credentials = serializers.SerializerMethodField(help_text="C2PA manifest store for the MIDI (sidecar)")
    preview_credentials = serializers.SerializerMethodField(help_text="C2PA manifest store for the preview")

    def _ref(self, artifact: Artifact | None, url_name: str, cue: Cue, query: str = ""):
        if artifact is None:
            return None
        url = reverse(url_name, kwargs={"cue_id": cue.pk}) + query
        return {
            "sha256": artifact.sha256,
            "media_type": artifact.media_type,
            "size": artifact.size,
            "url": self.context["request"].build_absolute_uri(url),
        }

    @extend_schema_field(ArtifactSerializer(allow_null=True))
    def get_midi(self, cue):
        return self._ref(cue.midi, "cue-midi", cue)

    @extend_schema_field(ArtifactSerializer(allow_null=True))
    def get_source_audio(self, cue):
        return self._ref(cue.source_audio, "cue-audio", cue, "?format=source")

    @extend_schema_field(ArtifactSerializer(allow_null=True))
    def get_audio(self, cue):
        return self._ref(cue.audio, "cue-audio", cue, "?format=flac")

    @extend_schema_field(ArtifactSerializer(allow_null=True))
    def get_preview(self, cue):
        return self._ref(cue.preview, "cue-audio", cue, "?format=preview")

    @extend_schema_field(ArtifactSerializer(allow_null=True))
    def get_waveform(self, cue):
        return self._ref(cue.waveform, "cue-waveform", cue)

    @extend_schema_field(ArtifactSerializer(allow_null=True))
    def get_midi_credentials(self, cue):
        return self._ref(cue.midi_credentials, "cue-credentials", cue, "?for=midi")

    @extend_schema_field(ArtifactSerializer(allow_null=True))
    def get_preview_credentials(self, cue):
        return self._ref(cue.preview_credentials, "cue-credentials", cue, "?for=preview")


class CueVersionOfSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    code = serializers.CharField()
    title = serializers.CharField()


class LicenceConstraintsSerializer(serializers.Serializer):
    training_licences = serializers.ListField(
        child=serializers.CharField(), help_text="SPDX identifiers or LicenseRef-... of the model's training data"
    )
    commercial_use = serializers.BooleanField(
        allow_null=True, help_text="Whether every training collection allows commercial use; null when unknown"
    )
    generator_version = serializers.CharField(help_text="The model whose training data these constraints come from")


class CueOutputSerializer(serializers.ModelSerializer):
    code = serializers.CharField(read_only=True)
    parent = CueVersionOfSerializer(
        read_only=True, allow_null=True, help_text="The cue this one is a version of (a cut-down, an alternate mix)"
    )
    licence_constraints = serializers.SerializerMethodField(
        help_text="For generated cues: what the licences of the model's training data allow; null for imports"
    )
    moods = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    analysis = AnalysisSerializer(source="*", read_only=True)
    artifacts = CueArtifactsSerializer(source="*", read_only=True)
    processing = serializers.SerializerMethodField(help_text="The latest background job on this cue")

    class Meta:
        model = Cue
        fields = [
            "id",
            "code",
            "title",
            "description",
            "moods",
            "status",
            "source",
            "parent",
            "version_label",
            "licence_constraints",
            "created_by",
            "created_at",
            "updated_at",
            "processing_error",
            "analysis",
            "artifacts",
            "processing",
        ]

    @extend_schema_field(LicenceConstraintsSerializer(allow_null=True))
    def get_licence_constraints(self, cue):
        return cue.licence_constraints or None

    @extend_schema_field(ProcessingSerializer(allow_null=True))
    def get_processing(self, cue):
        jobs = list(cue.jobs.all())  # prefetched, newest first
        return ProcessingSerializer(jobs[0]).data if jobs else None


class CueListCreateApi(generics.ListAPIView):
    """List the cues you may see, or upload a new one (producers and admins)."""

    serializer_class = CueOutputSerializer
    filterset_class = CueFilter
    parser_classes = [MultiPartParser, FormParser]

    class InputSerializer(serializers.Serializer):
        midi = serializers.FileField(help_text="A Standard MIDI File (type 0 or 1)")
        title = serializers.CharField(max_length=200)
        description = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
        moods = serializers.ListField(
            child=serializers.CharField(max_length=200),
            required=False,
            default=list,
            help_text="Mood tags; repeat the field or separate tags with commas",
        )

    def get_queryset(self):
        return cue_list_for_user(self.request.user).prefetch_related("moods", "instruments", "jobs")

    @extend_schema(summary="List the cues you may see, filtered and paginated")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: CueOutputSerializer},
        summary="Upload a MIDI cue",
    )
    def post(self, request):
        if not has_role(request.user, PRODUCER, ADMIN):
            raise LibraryError("permission_denied", "Only producers and admins upload cues.", http_status=403)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["midi"]
        limit = settings.CUELEDGER_MAX_UPLOAD_BYTES
        if upload.size > limit:
            raise LibraryError("file_too_large", f"The MIDI file is {upload.size:,} bytes; the limit is {limit:,}.")
        cue = services.cue_ingest(
            created_by=request.user,
            title=data.validated_data["title"],
            description=data.validated_data["description"],
            moods=[tag for field in data.validated_data["moods"] for tag in field.split(",") if tag.strip()],
            midi=upload.read(),
        )
        cue = cue_get_for_user(request.user, cue.pk)
        return Response(CueOutputSerializer(cue, context={"request": request}).data, status=status.HTTP_201_CREATED)


class CueDetailApi(generics.RetrieveAPIView):
    serializer_class = CueOutputSerializer

    @extend_schema(summary="One cue with its analysis, artifacts and processing state")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_object(self):
        return cue_get_for_user(self.request.user, self.kwargs["cue_id"])


def _download(artifact: Artifact, filename: str) -> FileResponse:
    response = FileResponse(
        services.artifact_open(artifact),
        as_attachment=True,
        filename=filename,
        content_type=artifact.media_type,
    )
    response["ETag"] = f'"{artifact.sha256}"'
    response["Digest"] = f"sha-256={artifact.sha256}"
    return response


class CueMidiApi(APIView):
    @extend_schema(responses={(200, "audio/midi"): OpenApiTypes.BINARY}, summary="Download the cue's MIDI")
    def get(self, request, cue_id):
        cue = cue_get_for_user(request.user, cue_id)
        if cue.midi is None:
            raise LibraryError(
                "midi_missing", f"{cue.code} was imported as a recording, without MIDI.", http_status=404
            )
        return _download(cue.midi, f"{cue.code}.mid")


class CueAudioApi(APIView):
    _FORMATS = {"flac": ("audio", "flac"), "preview": ("preview", "ogg"), "source": ("source_audio", "source")}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "format",
                str,
                enum=list(_FORMATS),
                default="flac",
                description="flac: lossless master; preview: Ogg Vorbis for listening; source: the recording "
                "as uploaded (imported recordings only)",
            )
        ],
        responses={(200, "audio/flac"): OpenApiTypes.BINARY, (200, "audio/ogg"): OpenApiTypes.BINARY},
        summary="Download the cue's rendered audio",
    )
    def get(self, request, cue_id):
        return _download_variant(request, cue_id, parameter="format", variants=self._FORMATS, default="flac")


class CueWaveformApi(APIView):
    @extend_schema(responses={(200, "application/json"): OpenApiTypes.OBJECT}, summary="Waveform peaks for players")
    def get(self, request, cue_id):
        cue = cue_get_for_user(request.user, cue_id)
        return _download(_rendered(cue, "waveform"), f"{cue.code}.peaks.json")


class CueCredentialsApi(APIView):
    _FOR = {"midi": ("midi_credentials", "mid"), "preview": ("preview_credentials", "ogg")}

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "for",
                str,
                enum=list(_FOR),
                required=True,
                description="whose detached Content Credentials: the MIDI or the Ogg preview",
            )
        ],
        responses={(200, "application/c2pa"): OpenApiTypes.BINARY},
        summary="A C2PA manifest store (sidecar) for a file that cannot embed one; the FLAC carries its own",
    )
    def get(self, request, cue_id):
        return _download_variant(request, cue_id, parameter="for", variants=self._FOR, suffix=".c2pa")


def _download_variant(request, cue_id, *, parameter: str, variants: dict, default: str = "", suffix: str = ""):
    """Download the artifact a query parameter picks: ``variants`` maps its values to (cue field, file extension)."""
    chosen = request.query_params.get(parameter, default)
    if chosen not in variants:
        raise LibraryError("format_invalid", f"{parameter} must be one of {', '.join(variants)}; got {chosen!r}.")
    cue = cue_get_for_user(request.user, cue_id)
    field, extension = variants[chosen]
    return _download(_rendered(cue, field), f"{cue.code}.{extension}{suffix}")


def _rendered(cue: Cue, field: str) -> Artifact:
    artifact = getattr(cue, field)
    if artifact is None and field == "source_audio":
        raise LibraryError("source_audio_missing", f"{cue.code} was not uploaded as a recording.", http_status=404)
    if artifact is None:
        state = "rendering failed; see processing_error" if cue.status == Cue.Status.DRAFT else "still rendering"
        raise LibraryError("audio_not_ready", f"{cue.code} has no rendered audio yet ({state}).", http_status=409)
    return artifact


class CueProvenanceApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "CueProvenance", {"checkpoint": CheckpointSerializer(), "records": EntrySerializer(many=True)}
        ),
        summary="The cue's signed records, decoded, with inclusion proofs (legal, admin, and the cue's producer)",
    )
    def get(self, request, cue_id):
        cue = _cue_for_audit(request.user, cue_id)
        checkpoint = provenance_services.checkpoint_latest()
        entries = entries_for(cue.provenance_reference, below=checkpoint.size)
        return Response(
            {
                "checkpoint": CheckpointSerializer(checkpoint_data(checkpoint)).data,
                "records": EntrySerializer([entry_data(e, checkpoint) for e in entries], many=True).data,
            }
        )


class CueEvidenceBundleApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("since", int, description="add a consistency proof from this earlier size")],
        responses={(200, "application/json"): OpenApiTypes.BINARY},
        summary="The cue's evidence bundle, for offline checking with `python -m provenance.verify`",
    )
    def get(self, request, cue_id):
        cue = _cue_for_audit(request.user, cue_id)
        since = request.query_params.get("since")
        if since is not None and not (since.isascii() and since.isdigit()):
            raise LibraryError("validation_error", "since must be a whole number (an earlier tree size).")
        bundle = provenance_services.bundle_build(
            reference=cue.provenance_reference,
            since=int(since) if since else None,
            subject={"cue": {"id": str(cue.pk), "code": cue.code, "title": cue.title}},
        )
        response = HttpResponse(dump_bundle(bundle), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{cue.code}.evidence.json"'
        return response


class CuePromptApi(APIView):
    @extend_schema(
        responses=inline_serializer("CuePrompts", {"results": serializers.ListField(child=serializers.DictField())}),
        summary="The confidential prompt(s) the cue was generated from (legal, admin and the cue's creator)",
    )
    def get(self, request, cue_id):
        cue = _cue_for_audit(request.user, cue_id)
        # A version (a cut-down, a mix) was made from its parent's prompt, and its record carries that commitment.
        prompts = prompts_for(cue.provenance_reference) or (
            prompts_for(cue.parent.provenance_reference) if cue.parent else []
        )
        return Response(
            {
                "results": [
                    {
                        "commitment": p.commitment,
                        "prompt": None if p.erased_at else p.plaintext,
                        "salt": None if p.erased_at else bytes(p.salt).hex(),
                        "created_at": p.created_at,
                        "erased_at": p.erased_at,
                    }
                    for p in prompts
                ]
            }
        )


def _cue_for_audit(user, cue_id) -> Cue:
    cue = cue_get_for_user(user, cue_id)
    if not cue_auditable_by(user, cue):
        raise LibraryError(
            "permission_denied", "Provenance is for legal, admins and the cue's producer.", http_status=403
        )
    return cue
