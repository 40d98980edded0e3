"""Reads of generation, each limited to what the asking user may see."""

from django.db.models import QuerySet
from django.http import Http404

from cueledger.roles import ADMIN, LEGAL, user_roles
from generation.models import GenerationJob


def generation_jobs_for_user(user) -> QuerySet[GenerationJob]:
    """Legal and admins see every job; anyone else the jobs they asked for."""
    jobs = GenerationJob.objects.select_related("created_by", "generator", "parent").prefetch_related("results__cue")
    if user_roles(user) & {ADMIN, LEGAL}:
        return jobs.all()
    return jobs.filter(created_by=user)


def generation_job_get_for_user(user, job_id) -> GenerationJob:
    try:
        return generation_jobs_for_user(user).get(pk=job_id)
    except (GenerationJob.DoesNotExist, ValueError):
        raise Http404 from None
