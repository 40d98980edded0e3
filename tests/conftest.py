import pytest

from tests.factories import client_for, user_in_role


@pytest.fixture(scope="session")
def dev_ca(tmp_path_factory):
    """One development CA and Content Credentials signing certificate for the whole run."""
    from provenance.content_credentials import dev_ca_create

    return dev_ca_create(tmp_path_factory.mktemp("c2pa"))


@pytest.fixture(autouse=True)
def private_files(settings, tmp_path, dev_ca):
    """Every test stores artifacts, scratch files and signing keys in its own folders."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CUELEDGER_SCRATCH_DIR = tmp_path / "scratch"
    settings.CUELEDGER_INDEX_DIR = tmp_path / "indexes"
    settings.CUELEDGER_RECHECK_DELAY_SECONDS = 0
    settings.CUELEDGER_KEY_DIR = tmp_path / "keys"
    settings.CUELEDGER_KEY_PASSPHRASE = "test passphrase, not a secret"
    settings.CUELEDGER_C2PA_TRUST_ANCHORS = dev_ca.ca_cert
    settings.CUELEDGER_C2PA_CERT_CHAIN = dev_ca.signing_chain
    settings.CUELEDGER_C2PA_KEY = dev_ca.signing_key
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def fresh_similarity_indexes():
    """Each test starts like a new worker process: no corpus indexes in memory from another test's database."""
    from library.services import similarity

    similarity._loaded = None
    yield
    similarity._loaded = None


@pytest.fixture(autouse=True)
def fresh_ledger_memory():
    """Each test starts like a new process: no signing key or ledger head remembered from another test's appends."""
    from provenance.services import appends

    appends._KEY_SEEN.clear()
    appends._HEAD_WRITTEN.clear()
    yield


@pytest.fixture(autouse=True)
def append_only_ledger(request):
    """The ledger's triggers refuse DELETE, and on SQLite pytest-django empties tables with DELETE after each
    transactional test. So around such tests: make sure the triggers are in place before, drop them for the
    flush after; the next test puts them back. (On PostgreSQL the flush is a TRUNCATE, which they allow.)"""
    transactional = {"transactional_db", "live_server"} & set(request.fixturenames)
    if not transactional:
        yield
        return
    from django.db import connection

    from provenance.triggers import triggers_install, triggers_remove_unsafe

    request.getfixturevalue("transactional_db")
    triggers_install(connection)
    yield
    if connection.vendor == "sqlite":
        triggers_remove_unsafe(connection)


@pytest.fixture
def producer(db):
    return user_in_role("producer")


@pytest.fixture
def supervisor(db):
    return user_in_role("supervisor")


@pytest.fixture
def legal(db):
    return user_in_role("legal")


@pytest.fixture
def admin_user(db):
    return user_in_role("admin")


@pytest.fixture
def api():
    return client_for
