"""Eight processes append to the ledger on PostgreSQL at once: gapless, no fork, and it verifies."""

import os
import subprocess
import sys

from provenance import services
from provenance.models import LedgerEntry, SigningKey
from tests.integration.conftest import ROOT, worker_database_url

APPENDER = """
import django, sys
django.setup()
from provenance import services
for n in range(int(sys.argv[1])):
    services.ledger_append(kind="clearance", subjects=[(f"writer-{sys.argv[2]}-{n}", "ab" * 32)],
                           predicate={"decision": "cleared", "decided_by": f"writer {sys.argv[2]}", "reason": str(n)})
"""


def test_eight_writers_appending_500_records_each_leave_4000_gapless_entries(transactional_db, settings):
    env = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        DJANGO_SETTINGS_MODULE="cueledger.settings",
        CUELEDGER_KEY_DIR=str(settings.CUELEDGER_KEY_DIR),
        CUELEDGER_KEY_PASSPHRASE=settings.CUELEDGER_KEY_PASSPHRASE,
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", APPENDER, "500", str(n)], cwd=ROOT, env=env, stderr=subprocess.PIPE)
        for n in range(8)
    ]
    failures = [w.stderr.read().decode()[-2000:] for w in writers if w.wait(timeout=600) != 0]
    assert failures == []

    assert list(LedgerEntry.objects.order_by("index").values_list("index", flat=True)) == list(range(4000))
    assert SigningKey.objects.count() == 1  # the first writer made the key; nobody raced it into a second
    services.checkpoint_create()
    report = services.ledger_verify()
    assert report.ok and report.size == 4000, report
