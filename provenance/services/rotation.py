"""The signing keys as the ledger sees them: the key ring and rotations."""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.utils import timezone

from provenance.keys import key_destroy, key_generate
from provenance.ledger import (
    KeyRing,
    LedgerKey,
    b64,
)
from provenance.models import SigningKey
from provenance.services.appends import _append, _statement_check
from provenance.services.tree import _current_key_id, _head_locked, origin


def keyring() -> KeyRing:
    return KeyRing(key_as_ledger_key(key) for key in SigningKey.objects.all())


def key_as_ledger_key(key: SigningKey) -> LedgerKey:
    return LedgerKey(
        key_id=key.key_id,
        name=key.name,
        public_key=bytes(key.public_key),
        valid_from_index=key.valid_from_index,
        valid_until_index=key.valid_until_index,
    )


def key_rotate() -> SigningKey:
    """Retire the current key and start a new one. The hand-over is itself a record, signed by the old key, and the
    new key signs from the next index on. Old entries keep verifying against the retired key's window."""
    with transaction.atomic():
        head = _head_locked()
        old = SigningKey.objects.get(key_id=_current_key_id(head))
        identifier, public = key_generate()
        starts = head.size + 1
        predicate = {
            "event": "rotation",
            "retired_key_id": old.key_id,
            "new_key": {"key_id": identifier, "public_key": b64(public), "valid_from_index": starts},
        }
        _statement_check("key", [(f"ed25519-public-key:{identifier}", identifier)], predicate)
        _append(head, ("key", [(f"ed25519-public-key:{identifier}", identifier)], predicate, f"key:{identifier}"))
        old.valid_until_index, old.retired_at = starts, timezone.now()
        old.save(update_fields=["valid_until_index", "retired_at"])
        head.key_id = identifier
        head.save(update_fields=["key_id"])
        transaction.on_commit(partial(key_destroy, old.key_id))
        return SigningKey.objects.create(key_id=identifier, name=origin(), public_key=public, valid_from_index=starts)
