from cueledger.errors import DomainError


class GenerationError(DomainError):
    """A refused generation request or import with a stable code, e.g. ``tempo_out_of_range``."""
