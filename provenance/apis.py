"""The ledger's public face: checkpoints, entries with inclusion proofs, consistency proofs, keys and schemas."""

import json

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cueledger.api import Pagination
from cueledger.roles import ADMIN, LEGAL, has_role
from provenance import services
from provenance.errors import ProvenanceError
from provenance.ledger import b64, unb64, vkey
from provenance.models import LedgerEntry, SigningKey
from provenance.records import PREDICATE_TYPES, SCHEMAS


class CheckpointSerializer(serializers.Serializer):
    origin = serializers.CharField()
    size = serializers.IntegerField()
    root_hash = serializers.CharField(help_text="hex")
    note = serializers.CharField(help_text="the C2SP signed note: the text python -m provenance.verify checks")
    key_id = serializers.CharField()
    created_at = serializers.DateTimeField()


def checkpoint_data(checkpoint) -> dict:
    return {
        "origin": services.origin(),
        "size": checkpoint.size,
        "root_hash": checkpoint.root_hash,
        "note": checkpoint.note,
        "key_id": checkpoint.key_id,
        "created_at": checkpoint.created_at,
    }


def entry_data(entry: LedgerEntry, checkpoint) -> dict:
    """An entry decoded for reading (the verifier checks the exact ``envelope`` bytes, not this decoding)."""
    envelope = bytes(entry.envelope)
    statement = json.loads(unb64(json.loads(envelope)["payload"]))
    return {
        "index": entry.index,
        "kind": entry.kind,
        "predicate_type": statement["predicateType"],
        "subject": statement["subject"],
        "predicate": statement["predicate"],
        "key_id": entry.key_id,
        "created_at": entry.created_at,
        "leaf_hash": entry.leaf_hash,
        "envelope": b64(envelope),
        "inclusion_proof": [b64(h) for h in services.inclusion_proof(entry.index, checkpoint.size)],
        "checkpoint_size": checkpoint.size,
    }


class EntrySerializer(serializers.Serializer):
    index = serializers.IntegerField()
    kind = serializers.CharField()
    predicate_type = serializers.CharField()
    subject = serializers.ListField(child=serializers.DictField())
    predicate = serializers.DictField()
    key_id = serializers.CharField()
    created_at = serializers.DateTimeField()
    leaf_hash = serializers.CharField(help_text="hex SHA-256(0x00 || envelope)")
    envelope = serializers.CharField(help_text="base64 of the exact DSSE envelope bytes (the Merkle leaf's entry)")
    inclusion_proof = serializers.ListField(child=serializers.CharField(), help_text="base64 hashes, RFC 9162")
    checkpoint_size = serializers.IntegerField()


class LedgerCheckpointApi(APIView):
    @extend_schema(responses=CheckpointSerializer, summary="The latest signed checkpoint")
    def get(self, request):
        return Response(CheckpointSerializer(checkpoint_data(services.checkpoint_latest())).data)


class LedgerEntryApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "LedgerEntryWithCheckpoint", {"entry": EntrySerializer(), "checkpoint": CheckpointSerializer()}
        ),
        summary="One ledger entry with its inclusion proof to the latest checkpoint (legal and admin)",
    )
    def get(self, request, index: int):
        if not has_role(request.user, LEGAL, ADMIN):
            raise ProvenanceError("permission_denied", "Ledger entries are for legal and admins.", http_status=403)
        entry = LedgerEntry.objects.filter(index=index).first()
        if entry is None:
            raise Http404
        checkpoint = services.checkpoint_latest()
        return Response(
            {
                "entry": EntrySerializer(entry_data(entry, checkpoint)).data,
                "checkpoint": CheckpointSerializer(checkpoint_data(checkpoint)).data,
            }
        )


class LedgerConsistencyApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("first", int, required=True), OpenApiParameter("second", int, required=True)],
        responses=inline_serializer(
            "ConsistencyProof",
            {
                "first": serializers.IntegerField(),
                "second": serializers.IntegerField(),
                "proof": serializers.ListField(child=serializers.CharField()),
            },
        ),
        summary="A consistency proof between two tree sizes (RFC 9162 section 2.1.4)",
    )
    def get(self, request):
        try:
            first, second = int(request.query_params["first"]), int(request.query_params["second"])
        except (KeyError, ValueError):
            raise ProvenanceError("validation_error", "first and second must both be whole numbers.") from None
        proof = services.consistency_proof(first, second)
        return Response({"first": first, "second": second, "proof": [b64(h) for h in proof]})


class ProvenanceKeysApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "SigningKeyPage",
            {
                "count": serializers.IntegerField(),
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": serializers.ListField(child=serializers.DictField()),
            },
        ),
        summary="Every signing key with its validity window; save the answer as the verifier's --trusted-keys file",
    )
    def get(self, request):
        paginator = Pagination()
        page = paginator.paginate_queryset(SigningKey.objects.order_by("valid_from_index"), request, view=self)
        results = []
        for key in page:
            data = services.key_as_ledger_key(key).to_json()
            data.update(
                note_verifier_key=vkey(key.name, bytes(key.public_key)),
                created_at=key.created_at,
                retired_at=key.retired_at,
            )
            results.append(data)
        return paginator.get_paginated_response(results)


class ProvenanceSchemasApi(APIView):
    @extend_schema(
        operation_id="provenance_schemas_list",
        responses=OpenApiTypes.OBJECT,
        summary="The record kinds, their predicate types and schemas",
    )
    def get(self, request):
        base = request.build_absolute_uri("/api/v1/provenance/schemas/")
        return Response(
            {
                "count": len(SCHEMAS),
                "next": None,
                "previous": None,
                "results": [
                    {"kind": kind, "predicate_type": PREDICATE_TYPES[kind], "schema": f"{base}{kind}/"}
                    for kind in SCHEMAS
                ],
            }
        )


class ProvenanceSchemaApi(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="The JSON Schema (draft 2020-12) of one record kind")
    def get(self, request, kind: str):
        if kind not in SCHEMAS:
            raise Http404
        return Response(SCHEMAS[kind])
