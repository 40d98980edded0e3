import pytest

from tests.factories import client_for, user_in_role


@pytest.fixture(autouse=True)
def private_files(settings, tmp_path):
    """Every test stores artifacts and scratch files in its own folders."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CUELEDGER_SCRATCH_DIR = tmp_path / "scratch"
    return settings.MEDIA_ROOT


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
