from django.urls import path

from generation import apis

urlpatterns = [
    path("generations/", apis.GenerationListCreateApi.as_view(), name="generation-list"),
    path("generations/<uuid:job_id>/", apis.GenerationDetailApi.as_view(), name="generation-detail"),
    path("cues/<uuid:cue_id>/versions/", apis.CueVersionsApi.as_view(), name="cue-versions"),
    path("generators/", apis.GeneratorListApi.as_view(), name="generator-list"),
    path("imports/", apis.ImportApi.as_view(), name="import-create"),
]
