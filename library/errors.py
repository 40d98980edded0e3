from cueledger.errors import DomainError


class LibraryError(DomainError):
    """A failure of the catalog with a stable code, e.g. ``midi_invalid`` or ``file_too_large``."""
