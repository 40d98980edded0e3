"""Who sees which cues."""

import pytest
from django.http import Http404

from cueledger.roles import user_create
from library.models import Cue
from library.selectors import cue_get_for_user, cue_list_for_user
from library.services import cue_ingest
from tests.factories import midi_sketch, user_in_role


@pytest.fixture
def catalog(producer):
    other = user_in_role("producer")
    mine_ready = cue_ingest(created_by=producer, title="Mine, ready", midi=midi_sketch(seed=1))
    mine_analysing = cue_ingest(created_by=producer, title="Mine, analysing", midi=midi_sketch(seed=2))
    theirs_ready = cue_ingest(created_by=other, title="Theirs, ready", midi=midi_sketch(seed=3))
    theirs_draft = cue_ingest(created_by=other, title="Theirs, draft", midi=midi_sketch(seed=4))
    Cue.objects.filter(pk__in=[mine_ready.pk, theirs_ready.pk]).update(status=Cue.Status.READY)
    Cue.objects.filter(pk=theirs_draft.pk).update(status=Cue.Status.DRAFT)
    return {
        "mine_ready": mine_ready,
        "mine_analysing": mine_analysing,
        "theirs_ready": theirs_ready,
        "theirs_draft": theirs_draft,
    }


def titles(user) -> set[str]:
    return set(cue_list_for_user(user).values_list("title", flat=True))


def test_producers_see_only_their_own_cues(producer, catalog):
    assert titles(producer) == {"Mine, ready", "Mine, analysing"}


def test_supervisors_see_only_ready_cues(supervisor, catalog):
    assert titles(supervisor) == {"Mine, ready", "Theirs, ready"}


@pytest.mark.parametrize("role", ["legal", "admin"])
def test_legal_and_admin_see_everything(role, catalog):
    assert len(titles(user_in_role(role))) == 4


def test_a_user_in_two_roles_sees_the_union(catalog, producer):
    producer.groups.add(*user_in_role("supervisor").groups.all())
    assert titles(producer) == {"Mine, ready", "Mine, analysing", "Theirs, ready"}


def test_a_user_without_a_role_sees_nothing(catalog, db):
    user, _token = user_create(username="nobody", role="supervisor")
    user.groups.clear()
    assert titles(user) == set()


def test_an_invisible_cue_is_not_found_rather_than_forbidden(supervisor, catalog):
    with pytest.raises(Http404):
        cue_get_for_user(supervisor, catalog["theirs_draft"].pk)
    assert cue_get_for_user(supervisor, catalog["theirs_ready"].pk).title == "Theirs, ready"
