"""Reads of the catalog, each limited to what the asking user may see."""

import uuid

from django.db.models import Q, QuerySet
from django.http import Http404

from cueledger.roles import ADMIN, LEGAL, PRODUCER, SUPERVISOR, user_roles
from library.models import Cue

# The states a supervisor may see; clearance states join this list when the release gate exists.
SUPERVISOR_STATES = (Cue.Status.READY,)


def cue_list_for_user(user) -> QuerySet[Cue]:
    """Legal and admin see every cue, producers their own, supervisors those in states meant for them."""
    roles = user_roles(user)
    cues = Cue.objects.select_related(
        "created_by",
        "parent",
        "midi",
        "source_audio",
        "audio",
        "preview",
        "waveform",
        "midi_credentials",
        "preview_credentials",
    )
    if roles & {ADMIN, LEGAL}:
        return cues.all()
    visible = Q(pk__in=[])
    if PRODUCER in roles:
        visible |= Q(created_by=user)
    if SUPERVISOR in roles:
        visible |= Q(status__in=SUPERVISOR_STATES)
    return cues.filter(visible)


def cue_get_for_user(user, cue_id) -> Cue:
    """The cue if the user may see it; otherwise 404, so that a cue's existence is not disclosed."""
    try:
        return cue_list_for_user(user).prefetch_related("moods", "instruments", "jobs").get(pk=cue_id)
    except (Cue.DoesNotExist, ValueError):
        raise Http404 from None


def cue_by_reference(reference: str) -> Cue | None:
    """A cue by its id (UUID) or its code (CUE-000123), for commands run by operators; None when there is none."""
    if reference.upper().startswith("CUE-") and reference[4:].isdigit():
        return Cue.objects.filter(number=int(reference[4:])).first()
    try:
        return Cue.objects.filter(pk=uuid.UUID(reference)).first()
    except ValueError:
        return None


def cue_auditable_by(user, cue: Cue) -> bool:
    """Legal and admin audit every cue; a producer audits the cues they made. Supervisors never see provenance:
    it names models and their inputs."""
    roles = user_roles(user)
    return bool(roles & {ADMIN, LEGAL}) or (PRODUCER in roles and cue.created_by_id == user.pk)
