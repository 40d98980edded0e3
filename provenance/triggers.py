"""Database triggers that make the ledger tables append-only, on SQLite and PostgreSQL."""

PROTECTED_TABLES = ("provenance_ledgerentry", "provenance_merklenode", "provenance_checkpoint")
MESSAGE = "the provenance ledger is append-only"

_POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION provenance_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}: % on % refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END $$;
"""


def install_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        statements = [_POSTGRES_FUNCTION]
        for table in PROTECTED_TABLES:
            statements.append(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            statements.append(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION provenance_refuse_change()"
            )
        return statements
    if vendor == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {action} on {table} refused'); END"
            for table in PROTECTED_TABLES
            for action in ("UPDATE", "DELETE")
        ]
    raise RuntimeError(f"append-only triggers are written for SQLite and PostgreSQL, not {vendor}")


def remove_sql(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}" for table in PROTECTED_TABLES]
    return [
        f"DROP TRIGGER IF EXISTS {table}_no_{action.lower()}"
        for table in PROTECTED_TABLES
        for action in ("UPDATE", "DELETE")
    ]


def triggers_install(connection) -> None:
    with connection.cursor() as cursor:
        for statement in install_sql(connection.vendor):
            cursor.execute(statement)


def triggers_remove_unsafe(connection) -> None:
    """Drop the triggers: for tests that simulate an attacker with database access, and for test teardown."""
    with connection.cursor() as cursor:
        for statement in remove_sql(connection.vendor):
            cursor.execute(statement)
