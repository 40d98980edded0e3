from django.db import connection

from provenance import services
from provenance.triggers import triggers_install, triggers_remove_unsafe

DIGEST = "ab" * 32
REFERENCE = "cue:test"


def clearance(n: int = 0, digest: str = DIGEST):
    return services.ledger_append(
        kind="clearance",
        reference=REFERENCE,
        subjects=[(f"cue-{n}.mid", digest)],
        predicate={"decision": "cleared", "decided_by": "legal", "reason": f"decision {n}"},
    )


class triggers_off:
    """Act as an attacker with write access to the database: drop the append-only triggers for a moment."""

    def __enter__(self):
        triggers_remove_unsafe(connection)

    def __exit__(self, *exc):
        triggers_install(connection)
