from django.urls import path

from library import apis, similarity_apis

urlpatterns = [
    path("cues/", apis.CueListCreateApi.as_view(), name="cue-list"),
    path("cues/<uuid:cue_id>/", apis.CueDetailApi.as_view(), name="cue-detail"),
    path("cues/<uuid:cue_id>/midi/", apis.CueMidiApi.as_view(), name="cue-midi"),
    path("cues/<uuid:cue_id>/audio/", apis.CueAudioApi.as_view(), name="cue-audio"),
    path("cues/<uuid:cue_id>/waveform/", apis.CueWaveformApi.as_view(), name="cue-waveform"),
    path("cues/<uuid:cue_id>/credentials/", apis.CueCredentialsApi.as_view(), name="cue-credentials"),
    path("cues/<uuid:cue_id>/prompt/", apis.CuePromptApi.as_view(), name="cue-prompt"),
    path("cues/<uuid:cue_id>/provenance/", apis.CueProvenanceApi.as_view(), name="cue-provenance"),
    path("cues/<uuid:cue_id>/evidence-bundle/", apis.CueEvidenceBundleApi.as_view(), name="cue-evidence-bundle"),
    path("cues/<uuid:cue_id>/similarity/", similarity_apis.CueSimilarityApi.as_view(), name="cue-similarity"),
    path(
        "similarity-reports/<uuid:report_id>/matches/<int:number>/image/",
        similarity_apis.MatchImageApi.as_view(),
        name="similarity-match-image",
    ),
    path("reference-works/", similarity_apis.ReferenceWorkListCreateApi.as_view(), name="reference-work-list"),
    path("reference-works/<int:pk>/", similarity_apis.ReferenceWorkDetailApi.as_view(), name="reference-work-detail"),
    path("similarity/corpus/", similarity_apis.CorpusApi.as_view(), name="similarity-corpus"),
    path("similarity/calibrations/", similarity_apis.CalibrationListApi.as_view(), name="similarity-calibrations"),
    path("similarity/alerts/", similarity_apis.AlertListApi.as_view(), name="similarity-alerts"),
    path(
        "similarity/alerts/<int:pk>/acknowledge/",
        similarity_apis.AlertAcknowledgeApi.as_view(),
        name="similarity-alert-acknowledge",
    ),
]
