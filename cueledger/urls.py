from django.contrib import admin
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from cueledger.apis import MeApi

urlpatterns = [
    path("", lambda request: redirect("swagger-ui")),
    path("api/v1/me/", MeApi.as_view(), name="me"),
    path("api/v1/", include("library.urls")),
    path("api/v1/", include("provenance.urls")),
    path("api/v1/", include("generation.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
]


def _json_error(code: str, detail: str, status: int):
    def view(request, exception=None):
        return JsonResponse({"code": code, "detail": detail}, status=status)

    return view


# Errors raised outside DRF views (an unknown URL, a crash in middleware) keep the API's error format.
handler400 = _json_error("bad_request", "The request could not be understood.", 400)
handler403 = _json_error("permission_denied", "You do not have permission to do this.", 403)
handler404 = _json_error("not_found", "Nothing is here.", 404)
handler500 = _json_error("internal_error", "The server failed; the error has been logged.", 500)
