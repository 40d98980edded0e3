"""Migration 0005 changes the keys of the ledger's tables by hand-written SQL (Django cannot migrate a table to a
composite primary key): the ledger must come through it, both ways, whole and still append-only."""

from django.db import IntegrityError, connection
from django.db.migrations.executor import MigrationExecutor

from provenance import services
from provenance.models import LedgerEntry, MerkleNode
from tests.provenance.factories import clearance

BEFORE = [("provenance", "0004_entry_indexes")]


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(target)


def _latest():
    return [key for key in MigrationExecutor(connection).loader.graph.leaf_nodes() if key[0] == "provenance"]


def _sqlite_table(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [name])
        return cursor.fetchone()[0]


def _postgresql_key(table: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def _append_only(table: str) -> bool:
    """Whether the database refuses both UPDATE and DELETE on ``table`` (which holds rows)."""
    refused = 0
    for statement in (f'UPDATE {table} SET "index" = "index" + 1000', f"DELETE FROM {table}"):
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        except IntegrityError:
            refused += 1
    return refused == 2


def _constraints(table: str) -> dict:
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, table)


def _has_reference_index() -> bool:
    return _constraints("provenance_ledgerentry").get("ledger_entry_reference", {}).get("columns") == [
        "reference",
        "index",
    ]


def _nodes_unique_by_place() -> bool:
    """Whether the node table refuses a second node at a place, whatever enforces it (the key, or a constraint)."""
    return any(
        c["columns"] == ["level", "index"] and (c["unique"] or c["primary_key"])
        for c in _constraints("provenance_merklenode").values()
    )


def _leaf_rows() -> dict[int, bytes]:
    return {index: bytes(value) for index, value in MerkleNode.objects.filter(level=0).values_list("index", "hash")}


def _leaves() -> dict[int, bytes]:
    return {index: bytes.fromhex(leaf) for index, leaf in LedgerEntry.objects.values_list("index", "leaf_hash")}


def test_the_ledger_comes_through_the_key_change_both_ways(transactional_db):
    latest = _latest()
    try:
        clearance(0)
        _migrate(BEFORE)
        clearance(1)  # written under the old keys (through the append paths, which name columns, not the id)
        _migrate(latest)
        for n in range(2, 7):
            clearance(n)
        assert services.ledger_verify().ok
        assert MerkleNode.objects.count() == 7 + 3 + 1  # leaves, three pairs, one four-leaf subtree
        assert MerkleNode.objects.get(level=2, index=0).pk == (2, 0)
        if connection.vendor == "sqlite":
            assert _sqlite_table("provenance_merklenode").endswith("WITHOUT ROWID")
            assert '"index" integer NOT NULL PRIMARY KEY' in _sqlite_table("provenance_ledgerentry")
        else:
            assert _postgresql_key("provenance_merklenode") == ["level", "index"]
        assert _append_only("provenance_merklenode") and _append_only("provenance_ledgerentry")
        assert _has_reference_index() and _nodes_unique_by_place()
        _migrate(BEFORE)
        assert services.ledger_verify().ok
        assert LedgerEntry.objects.count() == 7 and _leaf_rows() == _leaves()
        if connection.vendor == "sqlite":
            assert "AUTOINCREMENT" in _sqlite_table("provenance_merklenode")
            assert '"index" bigint unsigned NOT NULL PRIMARY KEY' in _sqlite_table("provenance_ledgerentry")
        else:
            assert _postgresql_key("provenance_merklenode") == ["id"]
        assert _constraints("provenance_merklenode")["merkle_node_unique"]["unique"]
        clearance(7)  # appends write their nodes into the table with an id again
        assert _leaf_rows() == _leaves() and len(_leaves()) == 8 and services.ledger_verify().ok
        assert _append_only("provenance_merklenode") and _append_only("provenance_ledgerentry")
        assert _has_reference_index() and _nodes_unique_by_place()
    finally:
        _migrate(latest)
