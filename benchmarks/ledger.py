"""Ledger throughput and verification, on SQLite and PostgreSQL.

For each database:
- appends/s, one writer and eight writer processes: ledger_append (sign, hash, tree nodes, serialised on the head
  row, one transaction each) against a baseline of plain single-row inserts, one transaction each, into a table of
  the same shape as the ledger's entries;
- verifying a 100,000-entry ledger from scratch (ledger_verify: every signature, leaf, node and checkpoint) against
  a baseline that only reads the rows and hashes each envelope.
And, without a database: inclusion-proof size and time at 1M leaves, against recomputing the root from the leaves.

Usage: python benchmarks/ledger.py [--postgres URL] [--appends 2000] [--entries 100000]
  --postgres  a server URL (e.g. postgres://postgres@127.0.0.1:5432/postgres); a database cueledger_bench is
              dropped and made afresh there. Without it only SQLite is measured.
Targets (issue 3): appends >= 50% of the baseline; 100,000 entries verified in <= 10 s; proofs <= 32 x ceil(log2 n).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PLAIN_TABLE = """CREATE TABLE bench_plain ("index" bigint PRIMARY KEY, leaf_hash varchar(64) NOT NULL,
  envelope {blob} NOT NULL, subject_digest varchar(64) NOT NULL, kind varchar(20) NOT NULL,
  key_id varchar(64) NOT NULL, created_at {time} NOT NULL)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="PostgreSQL server URL; measured beside SQLite when given")
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement in a child process
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return

    scratch = Path(tempfile.mkdtemp(prefix="cueledger-ledger-bench-"))
    databases = {"sqlite": f"sqlite:///{scratch / 'bench.sqlite3'}"}
    if args.postgres:
        databases["postgresql"] = postgres_fresh(args.postgres)
    rows = []
    for name, url in databases.items():
        print(f"{name}: appends ...", flush=True)
        env = setup_env(url, scratch / name)
        child(env, {"task": "migrate"})
        one = child(env, {"task": "appends", "writer": 0, "count": args.appends})
        plain_one = child(env, {"task": "plain", "writer": 0, "count": args.appends})
        eight = concurrent(env, "appends", args.appends // 8)
        plain_eight = concurrent(env, "plain", args.appends // 8)
        rows.append((f"{name}: appends/s, 1 writer", one, "plain inserts", plain_one, ">= 50% of baseline"))
        rows.append((f"{name}: appends/s, 8 writers", eight, "plain inserts", plain_eight, ">= 50% of baseline"))
        batched = child(env, {"task": "drain", "count": args.appends})
        plain_batched = child(env, {"task": "plain_batched", "writer": 9, "count": args.appends})
        rows.append(
            (
                f"{name}: appends/s, outbox drain (200 a transaction)",
                batched,
                "plain inserts, 200 a transaction",
                plain_batched,
                ">= 50% of baseline",
            )
        )
        print(f"{name}: loading {args.entries:,} entries and verifying ...", flush=True)
        child(env, {"task": "load", "count": args.entries})
        verified = child(env, {"task": "verify"})
        rows.append(
            (
                f"{name}: verify {args.entries:,} entries (s)",
                verified["verify"],
                "read + hash rows",
                verified["baseline"],
                "<= 10 s",
            )
        )
    rows.extend(proofs_at(1_000_000))
    print_table(rows)


def setup_env(url: str, var: Path) -> dict:
    return dict(
        os.environ,
        DATABASE_URL=url,
        CUELEDGER_VAR_DIR=str(var),
        DJANGO_SETTINGS_MODULE="cueledger.settings",
        CUELEDGER_KEY_PASSPHRASE="benchmark",
        CELERY_TASK_ALWAYS_EAGER="1",
    )


def child(env: dict, job: dict):
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def concurrent(env: dict, task: str, each: int) -> float:
    start = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker",
                json.dumps({"task": task, "writer": n + 1, "count": each, "quiet": True}),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        for n in range(8)
    ]
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"a concurrent {task} writer failed")
    return 8 * each / (time.perf_counter() - start)


def run_worker(job: dict):
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if job["task"] == "migrate":
        call_command("migrate", verbosity=0)
        blob, stamp = ("bytea", "timestamptz") if connection.vendor == "postgresql" else ("blob", "datetime")
        with connection.cursor() as cursor:
            cursor.execute(PLAIN_TABLE.format(blob=blob, time=stamp))
        return None
    if job["task"] in ("appends", "plain", "plain_batched"):
        return write(job)
    if job["task"] == "drain":
        return drain(job["count"])
    if job["task"] == "load":
        return load(job["count"])
    if job["task"] == "verify":
        return verify()
    raise SystemExit(f"unknown task {job}")


def write(job: dict) -> float:
    from django.db import connection, transaction
    from django.utils import timezone

    from provenance import services
    from provenance.ledger import sign_envelope

    predicate = {"decision": "cleared", "decided_by": "benchmark", "reason": "measured"}
    if job["task"] == "appends":
        services.ledger_append(kind="clearance", subjects=[("warm-up", "ab" * 32)], predicate=predicate)
        start = time.perf_counter()
        for n in range(job["count"]):
            services.ledger_append(
                kind="clearance",
                subjects=[(f"w{job['writer']}-{n}", "ab" * 32)],
                predicate={**predicate, "reason": f"{job['writer']}-{n}"},
            )
        return job["count"] / (time.perf_counter() - start)
    envelope = sign_envelope(b"{}", services.signer_for(services.current_key_id()))
    base = (job["writer"] + 1) * 10_000_000
    per_transaction = 200 if job["task"] == "plain_batched" else 1
    start = time.perf_counter()
    for first in range(0, job["count"], per_transaction):
        with transaction.atomic(), connection.cursor() as cursor:
            for n in range(first, min(first + per_transaction, job["count"])):
                cursor.execute(
                    'INSERT INTO bench_plain ("index", leaf_hash, envelope, subject_digest, kind, key_id, created_at)'
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [base + n, "cd" * 32, envelope, "ab" * 32, "clearance", "ef" * 32, timezone.now()],
                )
    return job["count"] / (time.perf_counter() - start)


def drain(count: int) -> float:
    """How the product appends: records queued in their callers' transactions, then drained 200 a transaction."""
    from cueledger.celery import app
    from provenance import services

    app.conf.task_always_eager = False  # leave the records queued (their messages go to the unread local broker)
    for n in range(count):
        services.record_enqueue(
            kind="clearance",
            subjects=[(f"queued-{n}", "ab" * 32)],
            predicate={"decision": "cleared", "decided_by": "benchmark", "reason": str(n)},
        )
    start = time.perf_counter()
    appended = services.outbox_drain()
    elapsed = time.perf_counter() - start
    if appended != count:
        raise SystemExit(f"drained {appended} of {count} records")
    return count / elapsed


def load(count: int) -> None:
    """A ledger of ``count`` entries built in bulk with the same functions an append uses (signing, statements,
    the Merkle tree), so that verification has something large to check without hours of single appends."""
    from django.db import transaction
    from django.utils import timezone

    from provenance import services
    from provenance.ledger import MemoryNodeStore, MerkleTree, leaf_hash, make_statement, sign_envelope
    from provenance.models import LedgerEntry, LedgerHead, MerkleNode
    from provenance.records import PREDICATE_TYPES

    with transaction.atomic():
        LedgerHead.objects.get_or_create(pk=1)
        head = LedgerHead.objects.select_for_update().get(pk=1)
        start_index = head.size
        signer = services.signer_for(services.current_key_id())
        store = MemoryNodeStore()
        tree = MerkleTree(store)
        for entry in LedgerEntry.objects.order_by("index").values_list("leaf_hash", flat=True):
            tree.append(bytes.fromhex(entry))
        entries, now = [], timezone.now()
        for n in range(start_index, start_index + count):
            payload = make_statement(
                [(f"bulk-{n}", "ab" * 32)],
                PREDICATE_TYPES["clearance"],
                {"decision": "cleared", "decided_by": "bulk", "reason": str(n)},
            )
            envelope = sign_envelope(payload, signer)
            tree.append(leaf_hash(envelope))
            entries.append(
                LedgerEntry(
                    index=n,
                    leaf_hash=leaf_hash(envelope).hex(),
                    envelope=envelope,
                    subject_digest="ab" * 32,
                    kind="clearance",
                    key_id=signer.key_id,
                    created_at=now,
                )
            )
        LedgerEntry.objects.bulk_create(entries, batch_size=5000)
        existing = set(MerkleNode.objects.values_list("level", "index"))
        nodes = [MerkleNode(level=lv, index=i, hash=h) for (lv, i), h in store.nodes.items() if (lv, i) not in existing]
        MerkleNode.objects.bulk_create(nodes, batch_size=5000)
        head.size = tree.size
        head.frontier = services.frontier_of(store, tree.size)
        head.save()
    services.checkpoint_create()


def verify() -> dict:
    import hashlib

    from provenance import services
    from provenance.models import LedgerEntry

    start = time.perf_counter()
    for envelope in LedgerEntry.objects.order_by("index").values_list("envelope", flat=True).iterator(2000):
        hashlib.sha256(b"\x00" + bytes(envelope)).digest()
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    report = services.ledger_verify()
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"the benchmark ledger does not verify: {report}")
    return {"verify": elapsed, "baseline": baseline, "size": report.size}


def proofs_at(size: int) -> list:
    from provenance.ledger import MemoryNodeStore, MerkleTree, leaf_hash, root_of, verify_inclusion

    print(f"tree of {size:,} leaves ...", flush=True)
    leaves = [leaf_hash(n.to_bytes(8, "big")) for n in range(size)]
    tree = MerkleTree(MemoryNodeStore())
    for leaf in leaves:
        tree.append(leaf)
    root = tree.root()
    samples = range(0, size, size // 1000)
    start = time.perf_counter()
    proofs = [tree.inclusion_proof(index) for index in samples]
    per_proof = (time.perf_counter() - start) / len(proofs)
    for index, proof in zip(samples, proofs, strict=True):
        verify_inclusion(leaves[index], index, size, proof, root)
    start = time.perf_counter()
    root_of(leaves)
    naive = time.perf_counter() - start
    largest = max(32 * len(proof) for proof in proofs)
    bound = 32 * math.ceil(math.log2(size))
    return [
        (f"inclusion proof at {size:,} leaves (bytes, largest)", largest, "32 x ceil(log2 n)", bound, "<= bound"),
        (f"inclusion proof at {size:,} leaves (ms)", per_proof * 1000, "recompute root from leaves", naive * 1000, "-"),
    ]


def postgres_fresh(server_url: str) -> str:
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS cueledger_bench")
        conn.execute("CREATE DATABASE cueledger_bench")
    return server_url.rsplit("/", 1)[0] + "/cueledger_bench"


def print_table(rows) -> None:
    def cell(value):
        return f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)

    header = ("measure", "Cueledger", "baseline", "baseline value", "target")
    lines = [header] + [(m, cell(o), b, cell(v), t) for m, o, b, v, t in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    print()
    for number, line in enumerate(lines):
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)))
        if number == 0:
            print("  ".join("-" * width for width in widths))


if __name__ == "__main__":
    main()
