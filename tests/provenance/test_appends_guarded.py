"""Appends build on the head their process wrote last, guarded: a stale head never forks the tree."""

import dataclasses

import pytest
from django.db import transaction

from provenance import services
from provenance.models import LedgerEntry, LedgerHead, MerkleNode
from provenance.services import appends
from tests.provenance.factories import DIGEST, clearance

pytestmark = pytest.mark.django_db


def _record(n: int) -> tuple[str, str, str, bytes]:
    predicate = {"decision": "cleared", "decided_by": "legal", "reason": f"guarded {n}"}
    return ("clearance", DIGEST, "cue:guarded", appends._statement_check("clearance", [(f"g-{n}", DIGEST)], predicate))


def test_a_write_on_a_stale_head_writes_nothing():
    clearance(0)
    stale = appends._LAST_HEAD[appends._database()]
    clearance(1)
    nodes = MerkleNode.objects.count()
    signed = appends._sign([_record(2)], stale.key_id)
    with transaction.atomic():
        assert appends._write(stale, stale.key_id, signed) is None
    assert LedgerEntry.objects.count() == 2 and MerkleNode.objects.count() == nodes
    assert LedgerHead.objects.get(pk=1).size == 2
    assert services.ledger_verify().ok


@pytest.mark.parametrize(
    "stale",
    [
        pytest.param(lambda earlier, head: earlier, id="another writer appended"),
        pytest.param(lambda earlier, head: dataclasses.replace(head, frontier=[[1, 0, "00" * 32]]), id="another tree"),
        pytest.param(lambda earlier, head: dataclasses.replace(head, key_id="11" * 32), id="a key never seen here"),
    ],
)
def test_an_append_on_a_wrong_guess_of_the_head_appends_on_the_real_one(stale):
    database = appends._database()
    clearance(0)
    earlier = appends._LAST_HEAD[database]
    clearance(1)
    appends._LAST_HEAD[database] = stale(earlier, appends._LAST_HEAD[database])
    assert clearance(2).index == 2
    assert clearance(3).index == 3  # and once more, after the writer has seen others about
    assert list(LedgerEntry.objects.values_list("index", flat=True)) == [0, 1, 2, 3]
    services.checkpoint_create()
    assert services.ledger_verify().ok


def test_after_a_rotation_the_next_append_is_signed_by_the_new_key():
    clearance(0)
    new_key = services.key_rotate()
    entry = clearance(1)
    assert entry.index == 2 and entry.key_id == new_key.key_id
    assert LedgerEntry.objects.get(index=2).key_id == new_key.key_id
    services.checkpoint_create()
    assert services.ledger_verify().ok
