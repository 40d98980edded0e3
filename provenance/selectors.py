"""Reads of the provenance app."""

from provenance.models import PromptSecret


def prompts_for_subject(subject_digest: str) -> list[PromptSecret]:
    """The prompts kept for a subject, newest first; callers check who may read them (legal and the creator)."""
    return list(PromptSecret.objects.filter(subject_digest=subject_digest).order_by("-created_at"))
