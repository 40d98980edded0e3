"""Ledger throughput and verification, on SQLite and PostgreSQL.

For each database:
- appends/s, one writer and eight writer processes: ledger_append (sign, hash, tree nodes, serialised on the head
  row, one transaction each) against a baseline of plain single-row inserts, one transaction each, into a table of
  the same shape as the ledger's entries; and the outbox drain (200 a transaction) against the same baseline and,
  for comparison, against plain inserts 200 a transaction. The writers start and warm up before the clock runs,
  and the two sides alternate in rounds so that both see the same load on a shared machine;
- where a single append's time goes (µs): the work before the lock, a round trip, the commit's log flush, inserts;
- verifying a 100,000-entry ledger from scratch (ledger_verify: every signature, leaf, node and checkpoint) against
  a baseline that only reads the rows and hashes each envelope.
And, without a database: inclusion-proof size and time at 1M leaves, against recomputing the root from the leaves.

Usage: python benchmarks/ledger.py [--postgres URL] [--appends 2000] [--entries 100000]
  --postgres  a server URL (e.g. postgres://postgres@127.0.0.1:5432/postgres); a database cueledger_bench is
              dropped and made afresh there. Without it only SQLite is measured.
Targets (issue 3): appends >= 50% of the baseline; 100,000 entries verified in <= 10 s; proofs <= 32 x ceil(log2 n).
"""

import argparse
import hashlib
import itertools
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

from benchmarks.table import print_aligned  # noqa: E402

# Keyed as the ledger's entries are: on SQLite "integer PRIMARY KEY" makes the index the row id (migration
# provenance 0005), with no separate key index; on PostgreSQL a bigint primary key.
PLAIN_TABLE = """CREATE TABLE bench_plain ("index" {key} PRIMARY KEY, leaf_hash varchar(64) NOT NULL,
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
        one, plain_one = alternate(env, 1, ("appends", "plain"), args.appends)
        eight, plain_eight = alternate(env, 8, ("appends", "plain"), args.appends)
        rows.append((f"{name}: appends/s, 1 writer", one, "plain inserts", plain_one, ">= 50% of baseline"))
        rows.append((f"{name}: appends/s, 8 writers", eight, "plain inserts", plain_eight, ">= 50% of baseline"))
        batched, plain_batched = alternate(env, 1, ("drain", "plain_batched"), args.appends)
        drain = f"{name}: appends/s, outbox drain (200 a transaction)"
        rows.append((drain, batched, "plain inserts, 1 writer", plain_one, ">= 50% of baseline"))
        rows.append((drain, batched, "plain inserts, 200 a transaction", plain_batched, "- (for comparison)"))
        for step, micros in child(env, {"task": "costs"}).items():
            rows.append((f"{name}: {step} (µs)", micros, "-", "-", "-"))
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
        rows.append(
            (
                f"{name}: verify {args.entries:,} entries (s)",
                verified["verify"],
                "their Ed25519 checks alone",
                verified["signatures"],
                "- (the machine's floor)",
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


ROUNDS = 5
_WRITERS = itertools.count(1)


def alternate(env: dict, writers: int, tasks: tuple[str, str], count: int) -> tuple[float, float]:
    """Rates of two tasks measured in alternating rounds, so that both see the same load on a shared machine.

    ``writers`` processes start, connect and warm up first; then in each round all of them run the first task at
    once, then all of them the second, and a task's time is from the moment the writers are told to start until the
    last one is done. Interpreter start-up is outside the measurement, for both tasks alike."""
    each = max(1, count // (writers * ROUNDS))
    first_writer = next(_WRITERS) * 100  # distinct across runs: each writer inserts its own range of plain rows
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps({"task": "serve", "writer": first_writer + n})],
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    elapsed = dict.fromkeys(tasks, 0.0)
    try:
        for process in processes:
            _reply(process)
        for _ in range(ROUNDS):
            for task in tasks:
                if task == "drain":  # the records are queued first, by their callers, outside the measurement
                    _command(processes, "enqueue", each)
                start = time.perf_counter()
                _command(processes, task, each)
                elapsed[task] += time.perf_counter() - start
    finally:
        for process in processes:
            process.stdin.close()
        if any(process.wait() != 0 for process in processes):
            raise SystemExit(f"a writer of {tasks} failed")
    total = writers * each * ROUNDS
    return total / elapsed[tasks[0]], total / elapsed[tasks[1]]


def _command(processes: list, task: str, count: int) -> None:
    for process in processes:
        process.stdin.write(json.dumps({"task": task, "count": count}) + "\n")
        process.stdin.flush()
    for process in processes:
        _reply(process)


def _reply(process) -> None:
    if not process.stdout.readline():
        raise SystemExit("a writer stopped before it was done")


def run_worker(job: dict):
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if job["task"] == "migrate":
        call_command("migrate", verbosity=0)
        if connection.vendor == "postgresql":
            key, blob, stamp = "bigint", "bytea", "timestamptz"
        else:
            key, blob, stamp = "integer", "blob", "datetime"
        with connection.cursor() as cursor:
            cursor.execute(PLAIN_TABLE.format(key=key, blob=blob, time=stamp))
            # For the cost breakdown only: a copy of the entries table with its look-up indexes.
            if connection.vendor == "postgresql":
                cursor.execute("CREATE TABLE bench_indexed (LIKE provenance_ledgerentry INCLUDING ALL)")
            else:
                cursor.execute(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'provenance_ledgerentry'"
                    " AND type IN ('table', 'index') AND sql IS NOT NULL"
                )
                for (sql,) in cursor.fetchall():
                    cursor.execute(
                        sql.replace("provenance_ledgerentry", "bench_indexed").replace(
                            '"ledger_entry_', '"bench_entry_'
                        )
                    )
        return None
    if job["task"] == "serve":
        return serve(job["writer"])
    if job["task"] == "costs":
        return costs()
    if job["task"] == "load":
        return load(job["count"])
    if job["task"] == "verify":
        return verify()
    raise SystemExit(f"unknown task {job}")


def serve(writer: int) -> None:
    """Run the tasks the parent sends, one a line, answering each when done; end when the parent closes stdin."""
    from cueledger.celery import app
    from provenance import services
    from provenance.ledger import sign_envelope

    app.conf.task_always_eager = False  # queued records stay queued (their messages go to the unread local broker)
    counter = {"appends": 0, "plain": 0, "plain_batched": 0, "enqueue": 0, "drain": 0}
    envelope = sign_envelope(b"{}", services.signer_for(services.current_key_id()))
    append(writer, "warm-up")
    plain(writer * 100_000 + 99_999, envelope, 1, 1)
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        task, count, first = job["task"], job["count"], counter[job["task"]]
        counter[task] += count
        if task == "appends":
            for n in range(first, first + count):
                append(writer, n)
        elif task == "enqueue":
            enqueue(writer, first, count)
        elif task == "drain":
            drain(count)
        else:
            plain(writer * 100_000 + first, envelope, count, 200 if task == "plain_batched" else 1)
        print("done", flush=True)


def append(writer: int, n) -> None:
    from provenance import services

    services.ledger_append(
        kind="clearance",
        subjects=[(f"w{writer}-{n}", "ab" * 32)],
        predicate={"decision": "cleared", "decided_by": "benchmark", "reason": f"{writer}-{n}"},
    )


def plain(base: int, envelope: bytes, count: int, per_transaction: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    for first in range(0, count, per_transaction):
        with transaction.atomic(), connection.cursor() as cursor:
            for n in range(first, min(first + per_transaction, count)):
                cursor.execute(
                    'INSERT INTO bench_plain ("index", leaf_hash, envelope, subject_digest, kind, key_id, created_at)'
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [base + n, "cd" * 32, envelope, "ab" * 32, "clearance", "ef" * 32, timezone.now()],
                )


def enqueue(writer: int, first: int, count: int) -> None:
    from provenance import services

    for n in range(first, first + count):
        services.record_enqueue(
            kind="clearance",
            subjects=[(f"queued-{writer}-{n}", "ab" * 32)],
            predicate={"decision": "cleared", "decided_by": "benchmark", "reason": str(n)},
        )


def drain(count: int) -> None:
    """How the product appends: records queued in their callers' transactions (enqueue), drained 200 a transaction."""
    from provenance import services

    appended = services.outbox_drain()
    if appended != count:
        raise SystemExit(f"drained {appended} of {count} records")


def costs(samples: int = 400) -> dict:
    """Where a single writer's append goes, in µs each: the work before the lock, a bare round trip, the commit's
    wait for the log flush (synchronous_commit on PostgreSQL, synchronous=FULL on SQLite), a plain insert's
    transaction, an append's write and transaction alone, and a whole append."""
    from django.db import connection, transaction
    from django.utils import timezone

    from provenance import services
    from provenance.ledger import pae, sign_envelope
    from provenance.ledger.dsse import PAYLOAD_TYPE
    from provenance.records import predicate_check
    from provenance.services import appends

    def each(step) -> float:
        start = time.perf_counter()
        for n in range(samples):
            step(n)
        return (time.perf_counter() - start) / samples * 1e6

    predicate = {"decision": "cleared", "decided_by": "benchmark", "reason": "measured"}
    key_id = services.current_key_id()
    signer = services.signer_for(key_id)
    statement = appends._statement_check("clearance", [("costs", "ab" * 32)], predicate)
    message = pae(PAYLOAD_TYPE, statement)
    envelope = sign_envelope(statement, signer)
    append("costs", "warm-up")
    result = {
        "predicate schema check": each(lambda n: predicate_check("clearance", predicate)),
        "in-toto statement, RFC 8785": each(
            lambda n: appends._statement_check("clearance", [(f"c-{n}", "ab" * 32)], predicate)
        )
        - each(lambda n: predicate_check("clearance", predicate)),
        "Ed25519 signature": each(lambda n: signer.sign(message)),
        "DSSE envelope with its signature": each(lambda n: sign_envelope(statement, signer)),
    }

    def round_trip(n) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def indexed(n) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                'INSERT INTO bench_indexed ("index", leaf_hash, envelope, subject_digest, reference, kind, key_id,'
                " created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    n,
                    hashlib.sha256(b"%d" % n).hexdigest(),
                    envelope,
                    "ab" * 32,
                    "",
                    "clearance",
                    "ef" * 32,
                    timezone.now(),
                ],
            )

    def insert(n, flush=True) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            if not flush and connection.vendor == "postgresql":
                cursor.execute("SET LOCAL synchronous_commit TO off")
            cursor.execute(
                'INSERT INTO bench_plain ("index", leaf_hash, envelope, subject_digest, kind, key_id, created_at)'
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (800 if flush else 900) * 1_000_000 + n,
                    "cd" * 32,
                    envelope,
                    "ab" * 32,
                    "clearance",
                    "ef" * 32,
                    timezone.now(),
                ],
            )

    def unflushed(n) -> None:
        insert(n, flush=False)

    result["round trip (SELECT 1)"] = each(round_trip)
    result["plain insert, its transaction"] = each(insert)
    if connection.vendor == "sqlite":  # a pragma of the connection, not of a transaction
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=NORMAL")
        without_flush = each(unflushed)
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=FULL")
    else:
        without_flush = each(unflushed)
    result["commit's wait for the log flush"] = result["plain insert, its transaction"] - without_flush
    result["insert into a copy of the entries table, with its indexes"] = each(indexed)
    signed = [appends._sign([("clearance", "ab" * 32, "", statement)], key_id) for _ in range(samples)]

    def writes(n) -> None:
        if appends._write(key_id, signed[n]) is None:
            raise SystemExit("another key took over under a lone writer")

    result["append: its write and transaction"] = each(writes)
    result["append: all of it (ledger_append)"] = each(lambda n: append("costs", n))
    return {step: round(micros, 1) for step, micros in result.items()}


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
    return {"verify": elapsed, "baseline": baseline, "signatures": signatures_alone(), "size": report.size}


def signatures_alone() -> float:
    """Seconds for the ledger's Ed25519 verifications and nothing else (each signature over its PAE message), in as
    many forked processes as ledger_verify uses: what no verifier using ``cryptography`` can go below on this
    machine, measured in the same run because the machine's speed varies from run to run."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from provenance.ledger import dsse, keyring
    from provenance.models import LedgerEntry
    from provenance.services.rotation import keyring as ledger_keys

    public_keys = ledger_keys().public_keys
    checks = []
    for envelope in LedgerEntry.objects.order_by("index").values_list("envelope", flat=True).iterator(2000):
        payload, payload_type, [(key_id, signature)] = dsse._parse(bytes(envelope))
        checks.append((public_keys[key_id], signature, dsse.pae(payload_type, payload)))
    chunks = [checks[n : n + 500] for n in range(0, len(checks), 500)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(keyring._default_workers(), mp_context=context) as pool:
        list(pool.map(_verify_signatures, chunks[:1]))  # the workers are forked before the clock starts
        start = time.perf_counter()
        if not all(pool.map(_verify_signatures, chunks)):
            raise SystemExit("a signature of the benchmark ledger does not verify")
        return time.perf_counter() - start


def _verify_signatures(chunk: list) -> bool:
    from provenance.ledger.note import verify_ed25519

    return all(verify_ed25519(key, signature, message) for key, signature, message in chunk)


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
    print()
    print_aligned(header, [(m, cell(o), b, cell(v), t) for m, o, b, v, t in rows])


if __name__ == "__main__":
    main()
