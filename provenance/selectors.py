"""Reads of the provenance app."""

from provenance.models import PromptSecret


def prompts_for(reference: str) -> list[PromptSecret]:
    """The prompts kept for ``reference``, newest first; callers check who may read them (legal and the creator)."""
    return list(PromptSecret.objects.filter(reference=reference).order_by("-created_at"))


def entries_for(reference: str, *, below: int):
    """The ledger entries about ``reference`` that a checkpoint of size ``below`` covers, in ledger order."""
    from provenance.models import LedgerEntry

    return LedgerEntry.objects.filter(reference=reference, index__lt=below).order_by("index")
