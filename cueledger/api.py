"""API plumbing shared by every app: the error format, pagination and uploads."""

from pathlib import Path

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cueledger.errors import DomainError

_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "malformed_request",
    exceptions.ValidationError: "validation_error",
}


def exception_handler(exc, context):
    """Every error leaves the API as ``{"code": <stable code>, "detail": <sentence>}``, plus ``fields`` for
    per-field validation messages."""
    if isinstance(exc, DomainError):
        return Response({"code": exc.code, "detail": exc.detail}, status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    body = {"code": code}
    if isinstance(exc, exceptions.ValidationError):
        body["detail"] = _first_message(exc.detail)
        body["fields"] = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    else:
        body["detail"] = str(exc.detail)
    response.data = body
    return response


def _first_message(detail) -> str:
    """A one-line summary of a DRF validation detail: the first message, prefixed with its field."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail) or "Invalid input."


class Pagination(PageNumberPagination):
    page_size = 25
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_number(self, request, paginator):
        number = super().get_page_number(request, paginator)
        if number not in self.last_page_strings and not str(number).isdigit():
            raise exceptions.ValidationError({"page": ["Must be a positive whole number."]})
        return number


def upload_content(upload) -> bytes | Path:
    """An uploaded file's content for a service: a large upload is already spooled to a temporary file, so pass its
    path and let it be streamed rather than read into memory."""
    if hasattr(upload, "temporary_file_path"):
        return Path(upload.temporary_file_path())
    return upload.read()
