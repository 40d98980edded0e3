"""The one exception hierarchy of the ledger package.

Every failure carries a stable machine-readable ``code`` (used by the API, the CLI's ``--json`` output and tests), a
human ``detail``, and the ledger ``index`` of the entry it concerns when there is one, so that a legal user is told
*which* record failed, not only that something did.
"""

from __future__ import annotations

__all__ = ["LedgerError", "MalformedError", "VerificationError"]


class LedgerError(Exception):
    """Base class of every error raised by :mod:`provenance.ledger`."""

    code: str
    detail: str
    index: int | None

    def __init__(self, code: str, detail: str, *, index: int | None = None) -> None:
        self.code = code
        self.detail = detail
        self.index = index
        super().__init__(code, detail)

    def __str__(self) -> str:
        # One line, even if a detail quoted user input containing newlines: the CLI prints this verbatim.
        detail = " ".join(self.detail.split())
        where = f"entry {self.index}: " if self.index is not None else ""
        return f"{where}{self.code}: {detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.detail!r}, index={self.index!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Keeps errors picklable (Celery, multiprocessing) although ``index`` is keyword-only.
        return (_rebuild, (type(self), self.code, self.detail, self.index))

    def with_index(self, index: int) -> LedgerError:
        """Return a copy of this error (same class, code and detail) that names ledger entry ``index``."""
        return type(self)(self.code, self.detail, index=index)

    def to_json(self) -> dict[str, object]:
        """The error as the ``error`` member of a JSON verification report."""
        return {"code": self.code, "detail": self.detail, "index": self.index}


def _rebuild(cls: type[LedgerError], code: str, detail: str, index: int | None) -> LedgerError:
    return cls(code, detail, index=index)


class MalformedError(LedgerError):
    """Input that cannot be parsed: bad JSON, bad base64, a field of the wrong type or shape (CLI exit status 2)."""


class VerificationError(LedgerError):
    """Well-formed input for which a cryptographic or consistency check failed (CLI exit status 1)."""
