"""Confidential prompts: kept apart from the ledger, which carries only a salted commitment."""

from __future__ import annotations

import hashlib
import os

from django.utils import timezone

from provenance.models import PromptSecret


def prompt_commit(*, prompt: str, created_by, reference: str) -> dict:
    """Keep a prompt apart from the ledger and return the commitment a generation record carries instead."""
    salt = os.urandom(32)
    value = hashlib.sha256(salt + prompt.encode("utf-8")).hexdigest()
    PromptSecret.objects.create(
        commitment=value, reference=reference, created_by=created_by, plaintext=prompt, salt=salt
    )
    return {"algorithm": "sha256(salt||prompt)", "value": value}


def prompt_erase(*, reference: str) -> int:
    """Destroy the plaintext and salt of every prompt kept for ``reference``; the ledger's commitments stay valid."""
    return PromptSecret.objects.filter(reference=reference, erased_at__isnull=True).update(
        plaintext="", salt=None, erased_at=timezone.now()
    )
