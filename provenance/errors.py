from cueledger.errors import DomainError


class ProvenanceError(DomainError):
    """A failure of the provenance app with a stable code, e.g. ``key_passphrase_wrong`` or ``predicate_invalid``."""
