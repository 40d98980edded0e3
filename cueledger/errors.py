"""The base of every app's error type. The API turns any of them into ``{"code": ..., "detail": ...}``."""


class DomainError(Exception):
    """An expected failure with a stable machine-readable ``code`` and an HTTP status for the API."""

    code = "error"
    http_status = 400

    def __init__(self, code: str, detail: str, *, http_status: int | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        if http_status is not None:
            self.http_status = http_status

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"
