from django.conf import settings
from django.http import JsonResponse

# Room for multipart framing and the text fields around the largest file an upload may carry.
MULTIPART_ALLOWANCE = 1 << 20
# Endpoints that take a recording beside a MIDI file.
AUDIO_UPLOADS = ("/api/v1/reference-works/", "/api/v1/imports/")


class RequestSizeLimitMiddleware:
    """Refuse a request whose body is over the largest upload plus its form, before anything reads the body.

    It must run first: CSRF checks and session authentication parse multipart bodies (spooling files to disk) long
    before a view could look at the size.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw = request.META.get("CONTENT_LENGTH") or ""
        if not raw and request.META.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            return _error("length_required", "Send a Content-Length; chunked request bodies are not accepted.", 411)
        try:
            length = int(raw or 0)
        except ValueError:
            return _error("malformed_request", f"Content-Length {raw!r} is not a number.", 400)
        limit = settings.CUELEDGER_MAX_UPLOAD_BYTES
        if request.path.startswith(AUDIO_UPLOADS):  # a MIDI file and a recording
            limit += settings.CUELEDGER_MAX_REFERENCE_AUDIO_BYTES
        if length > limit + MULTIPART_ALLOWANCE:
            return _error("file_too_large", f"The request is {length:,} bytes; uploads are limited to {limit:,}.", 400)
        return self.get_response(request)


def _error(code: str, detail: str, status: int) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)
