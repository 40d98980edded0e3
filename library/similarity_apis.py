"""The REST API of reference works and similarity checks: importing references, reading a cue's reports with their
evidence pictures, legal's alerts, and the calibrated thresholds."""

from django.conf import settings
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from cueledger.api import upload_content
from cueledger.roles import ADMIN, LEGAL, has_role
from library.errors import LibraryError
from library.fingerprints import FingerprintError
from library.fingerprints.evidence import bit_error_png, piano_roll_png
from library.models import ReferenceWork, SimilarityAlert, SimilarityCalibration, SimilarityReport
from library.selectors import cue_auditable_by, cue_get_for_user
from library.services import similarity, similarity_job_create
from library.services.references import ReferenceInput, reference_import

HISTORY_LENGTH = 50


def _legal_only(user, action: str) -> None:
    if not has_role(user, LEGAL, ADMIN):
        raise LibraryError("permission_denied", f"Only legal and admins {action}.", http_status=403)


# --- Reference works ------------------------------------------------------------------------------------------------


class ReferenceWorkSerializer(serializers.ModelSerializer):
    has_midi = serializers.SerializerMethodField()
    has_audio = serializers.SerializerMethodField()
    detectors = serializers.SerializerMethodField(help_text="Which detectors can match this work")
    created_by = serializers.CharField(source="created_by.username", read_only=True)

    class Meta:
        model = ReferenceWork
        fields = [
            "id",
            "title",
            "composers",
            "rightsholders",
            "iswc",
            "isrc",
            "source",
            "notes",
            "has_midi",
            "has_audio",
            "detectors",
            "fingerprint_notes",
            "created_by",
            "created_at",
        ]

    def get_has_midi(self, work) -> bool:
        return work.midi_id is not None

    def get_has_audio(self, work) -> bool:
        return work.audio_id is not None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_detectors(self, work):
        return [d for d in ("acoustic", "symbolic") if getattr(work, f"has_{d}")]


def reference_works():
    """Reference works without their fingerprints' bytes, with whether each detector has one."""
    has = {
        f"has_{detector}": ExpressionWrapper(Q(**{f"{detector}_fingerprint__isnull": False}), BooleanField())
        for detector in ("acoustic", "symbolic")
    }
    return (
        ReferenceWork.objects.select_related("created_by")
        .defer("acoustic_fingerprint", "symbolic_fingerprint")
        .annotate(**has)
    )


class ReferenceWorkListCreateApi(generics.ListAPIView):
    serializer_class = ReferenceWorkSerializer
    parser_classes = [MultiPartParser, FormParser]

    class ReferenceWorkInputSerializer(serializers.Serializer):
        title = serializers.CharField(max_length=300)
        midi = serializers.FileField(required=False, help_text="A Standard MIDI File of the composition")
        audio = serializers.FileField(required=False, help_text="A recording: WAV, FLAC, Ogg Vorbis or MP3")
        composers = serializers.ListField(
            child=serializers.CharField(max_length=2000),
            required=False,
            default=list,
            help_text="Repeat the field, or separate names with semicolons",
        )
        rightsholders = serializers.ListField(
            child=serializers.CharField(max_length=2000),
            required=False,
            default=list,
            help_text="Repeat the field, or separate names with semicolons",
        )
        iswc = serializers.CharField(required=False, allow_blank=True, default="", help_text="T-123.456.789-C")
        isrc = serializers.CharField(required=False, allow_blank=True, default="", help_text="CC-XXX-YY-NNNNN")
        source = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
        notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=20_000)

    def get_queryset(self):
        return reference_works()

    @extend_schema(summary="List reference works (legal and admins)")
    def get(self, request, *args, **kwargs):
        _legal_only(request.user, "see reference works")
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": ReferenceWorkInputSerializer},
        responses={201: ReferenceWorkSerializer},
        summary="Import a reference work from MIDI and/or audio (legal and admins); cues are re-checked after",
    )
    def post(self, request):
        _legal_only(request.user, "import reference works")
        data = self.ReferenceWorkInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        limits = {"midi": settings.CUELEDGER_MAX_UPLOAD_BYTES, "audio": settings.CUELEDGER_MAX_REFERENCE_AUDIO_BYTES}
        for name, limit in limits.items():
            if name in values and values[name].size > limit:
                raise LibraryError(
                    "file_too_large", f"The {name} file is {values[name].size:,} bytes; the limit is {limit:,}."
                )
        work = reference_import(
            created_by=request.user,
            work=ReferenceInput(
                title=values["title"],
                midi=values["midi"].read() if "midi" in values else None,
                audio=upload_content(values["audio"]) if "audio" in values else None,
                composers=_split(values["composers"]),
                rightsholders=_split(values["rightsholders"]),
                iswc=values["iswc"],
                isrc=values["isrc"],
                source=values["source"],
                notes=values["notes"],
            ),
        )
        work = reference_works().get(pk=work.pk)
        return Response(ReferenceWorkSerializer(work).data, status=status.HTTP_201_CREATED)


def _split(fields: list[str]) -> list[str]:
    return [name.strip() for field in fields for name in field.split(";") if name.strip()]


class ReferenceWorkDetailApi(generics.RetrieveAPIView):
    serializer_class = ReferenceWorkSerializer

    @extend_schema(summary="One reference work (legal and admins)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_object(self):
        _legal_only(self.request.user, "see reference works")
        return get_object_or_404(reference_works(), pk=self.kwargs["pk"])


class CorpusApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "ReferenceCorpus",
            {
                "version": inline_serializer(
                    "CorpusVersion",
                    {
                        "revision": serializers.IntegerField(),
                        "count": serializers.IntegerField(),
                        "digest": serializers.CharField(),
                    },
                ),
                "thresholds": serializers.DictField(),
            },
        ),
        summary="The reference corpus's current version and the thresholds checks apply",
    )
    def get(self, request):
        return Response(
            {"version": similarity.corpus_version().as_dict(), "thresholds": similarity.thresholds_current()}
        )


class CalibrationSerializer(serializers.ModelSerializer):
    corpus_version = serializers.SerializerMethodField()

    class Meta:
        model = SimilarityCalibration
        fields = [
            "id",
            "detector",
            "threshold",
            "target_fpr",
            "measured_fpr",
            "pairs",
            "distribution",
            "engine_version",
            "corpus_version",
            "created_by",
            "created_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_corpus_version(self, calibration):
        return {
            "revision": calibration.corpus_revision,
            "count": calibration.corpus_count,
            "digest": calibration.corpus_digest,
        }


class CalibrationListApi(generics.ListAPIView):
    serializer_class = CalibrationSerializer
    queryset = SimilarityCalibration.objects.all()

    @extend_schema(summary="Threshold calibrations, newest first, with the score distributions they came from")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- A cue's reports ------------------------------------------------------------------------------------------------


class ReportSerializer(serializers.ModelSerializer):
    corpus_version = serializers.SerializerMethodField()
    matches = serializers.SerializerMethodField()

    class Meta:
        model = SimilarityReport
        fields = [
            "id",
            "verdict",
            "trigger",
            "engine_version",
            "corpus_version",
            "thresholds",
            "detectors",
            "matches",
            "nearest",
            "duration_ms",
            "created_at",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_corpus_version(self, report):
        return report.corpus_version

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_matches(self, report):
        request = self.context.get("request")
        matches = []
        for number, match in enumerate(report.matches):
            url = reverse("similarity-match-image", kwargs={"report_id": report.pk, "number": number})
            matches.append({**match, "image_url": request.build_absolute_uri(url) if request else url})
        return matches


class CueSimilarityApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "CueSimilarity",
            {
                "verdict": serializers.CharField(allow_null=True, help_text="pass or flag; null before any check"),
                "latest": ReportSerializer(allow_null=True),
                "history": serializers.ListField(child=serializers.DictField(), help_text="The last 50 checks"),
                "pending": serializers.BooleanField(help_text="A check is queued or running"),
            },
        ),
        summary="The cue's latest similarity report with its evidence, and the history of its checks",
    )
    def get(self, request, cue_id):
        cue = cue_get_for_user(request.user, cue_id)
        reports = cue.similarity_reports.all()  # newest corpus first
        latest = reports.first()
        pending = cue.jobs.filter(kind="similarity", state__in=["queued", "running"]).exists()
        latest_data = ReportSerializer(latest, context={"request": request}).data if latest else None
        if latest_data and not has_role(request.user, LEGAL, ADMIN):
            # Scores just below the thresholds would tell a producer how far to change a copy; legal keeps them.
            latest_data["nearest"] = {}
        history = reports.values("id", "verdict", "trigger", "corpus_revision", "matches", "created_at")
        return Response(
            {
                "verdict": latest.verdict if latest else None,
                "latest": latest_data,
                "history": [
                    {
                        "id": report["id"],
                        "verdict": report["verdict"],
                        "trigger": report["trigger"],
                        "corpus_revision": report["corpus_revision"],
                        "references": list({m["reference"]["id"]: m["reference"] for m in report["matches"]}.values()),
                        "created_at": report["created_at"],
                    }
                    for report in history[:HISTORY_LENGTH]
                ],
                "pending": pending,
            }
        )

    @extend_schema(
        request=None,
        responses={202: inline_serializer("SimilarityQueued", {"job": serializers.UUIDField(allow_null=True)})},
        summary="Check the cue again now (legal, admins and the cue's producer)",
    )
    def post(self, request, cue_id):
        cue = cue_get_for_user(request.user, cue_id)
        if not cue_auditable_by(request.user, cue):
            raise LibraryError(
                "permission_denied", "Only legal, admins and the cue's producer ask for a check.", http_status=403
            )
        if cue.audio_id is None or cue.status != cue.Status.READY:
            raise LibraryError(
                "cue_not_ready", f"{cue.code} is not rendered yet; it is checked when it is.", http_status=409
            )
        with transaction.atomic():
            job = similarity_job_create(cue_id=cue.pk, trigger=SimilarityReport.Trigger.REQUEST)
        return Response({"job": job.pk if job else None}, status=status.HTTP_202_ACCEPTED)


class MatchImageApi(APIView):
    @extend_schema(
        responses={(200, "image/png"): OpenApiTypes.BINARY},
        summary="A picture of one match: notes overlaid (symbolic) or bit error per second (acoustic)",
    )
    def get(self, request, report_id, number):
        report = get_object_or_404(SimilarityReport.objects.select_related("cue"), pk=report_id)
        cue_get_for_user(request.user, report.cue_id)  # 404 unless the user may see the cue
        if number >= len(report.matches):
            raise LibraryError("match_not_found", f"The report has {len(report.matches)} match(es).", http_status=404)
        match = report.matches[number]
        title = f"{report.cue.code} {report.cue.title} vs {match['reference']['title']}"
        try:
            if match["detector"] == "symbolic":
                png = piano_roll_png(match["evidence"], title=title)
            else:
                png = bit_error_png(match["evidence"], threshold=1 - match["threshold"], title=title)
        except FingerprintError as exc:
            raise LibraryError(exc.code, exc.detail, http_status=409) from None
        response = HttpResponse(png, content_type="image/png")
        response["Cache-Control"] = "private, max-age=86400"  # a report never changes
        return response


# --- Alerts ---------------------------------------------------------------------------------------------------------


class AlertSerializer(serializers.ModelSerializer):
    cue = serializers.SerializerMethodField()
    references = serializers.SerializerMethodField()
    acknowledged_by = serializers.CharField(source="acknowledged_by.username", allow_null=True, default=None)

    class Meta:
        model = SimilarityAlert
        fields = ["id", "cue", "report", "references", "created_at", "acknowledged_by", "acknowledged_at"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_cue(self, alert):
        return {"id": alert.cue_id, "code": alert.cue.code, "title": alert.cue.title, "status": alert.cue.status}

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_references(self, alert):
        return [{"id": work.pk, "title": work.title} for work in alert.references.all()]


class AlertListApi(generics.ListAPIView):
    serializer_class = AlertSerializer

    def get_queryset(self):
        alerts = SimilarityAlert.objects.select_related("cue", "acknowledged_by").prefetch_related("references")
        if self.request.query_params.get("open") in ("1", "true", "yes"):
            alerts = alerts.filter(acknowledged_at__isnull=True)
        return alerts

    @extend_schema(summary="New matches found on re-checks after references were added (legal and admins)")
    def get(self, request, *args, **kwargs):
        _legal_only(request.user, "see similarity alerts")
        return super().get(request, *args, **kwargs)


class AlertAcknowledgeApi(APIView):
    @extend_schema(request=None, responses=AlertSerializer, summary="Mark an alert as seen (legal and admins)")
    def post(self, request, pk):
        _legal_only(request.user, "acknowledge alerts")
        alert = get_object_or_404(SimilarityAlert.objects.select_related("cue"), pk=pk)
        return Response(AlertSerializer(similarity.alert_acknowledge(alert=alert, user=request.user)).data)
