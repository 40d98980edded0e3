from django.urls import path

from library import apis

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
]
