from django.urls import path

from provenance import apis

urlpatterns = [
    path("ledger/checkpoint/", apis.LedgerCheckpointApi.as_view(), name="ledger-checkpoint"),
    path("ledger/entries/<int:index>/", apis.LedgerEntryApi.as_view(), name="ledger-entry"),
    path("ledger/consistency/", apis.LedgerConsistencyApi.as_view(), name="ledger-consistency"),
    path("provenance/keys/", apis.ProvenanceKeysApi.as_view(), name="provenance-keys"),
    path("provenance/schemas/", apis.ProvenanceSchemasApi.as_view(), name="provenance-schemas"),
    path("provenance/schemas/<slug:kind>/", apis.ProvenanceSchemaApi.as_view(), name="provenance-schema"),
]
