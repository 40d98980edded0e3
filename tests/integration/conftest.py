"""Integration tests: the real PostgreSQL, the real broker (Redis or RabbitMQ) and real Celery worker processes.

They run when TEST_DATABASE_URL and TEST_BROKER_URL are set (`make integration` points DATABASE_URL and
CELERY_BROKER_URL at them). Unreachable services fail the run; they never turn into skips.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from kombu import Connection

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def real_services(django_db_setup, django_db_blocker):
    if not os.environ.get("TEST_DATABASE_URL"):
        message = "integration tests need TEST_DATABASE_URL and TEST_BROKER_URL (run them with `make integration`)"
        if os.environ.get("CUELEDGER_REQUIRE_INTEGRATION"):
            pytest.fail(message)
        pytest.skip(message)
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.fail(f"integration tests expect PostgreSQL, but DATABASE_URL gives {connection.vendor}")
        connection.ensure_connection()
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker or broker.startswith("filesystem"):
        pytest.fail("integration tests need CELERY_BROKER_URL pointing at a broker server (TEST_BROKER_URL)")
    try:
        with Connection(broker, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=2)
    except Exception as exc:  # any failure to connect is fatal here, whatever kombu raises
        pytest.fail(f"cannot reach the broker at {broker}: {exc}")


@pytest.fixture
def clean_broker():
    """Empty the test broker's queue so that a test sees only its own messages."""
    with Connection(os.environ["CELERY_BROKER_URL"]) as conn:
        conn.default_channel.queue_purge("celery")
        if conn.transport.driver_type == "redis":
            conn.default_channel.client.flushdb()


class Worker:
    """A Celery worker in its own process group, sharing the test database, media and scratch folders."""

    def __init__(self, env: dict, log: Path) -> None:
        self.log_path = log
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cueledger",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
                "--without-mingle",
                "--without-gossip",
                "--hostname",
                f"test-{log.stem}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{log.read_text()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole worker, parent and pool children, as a crash or an OOM kill would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def start_worker(transactional_db, settings, tmp_path, clean_broker):
    """Start real worker processes on the test database (the test's rows are committed, so they can see them)."""
    env = dict(
        os.environ,
        DATABASE_URL=worker_database_url(),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        CUELEDGER_SCRATCH_DIR=str(settings.CUELEDGER_SCRATCH_DIR),
        CUELEDGER_INDEX_DIR=str(settings.CUELEDGER_INDEX_DIR),
        CUELEDGER_RECHECK_DELAY_SECONDS="0",
        CUELEDGER_VAR_DIR=str(tmp_path / "var"),
        CUELEDGER_KEY_DIR=str(settings.CUELEDGER_KEY_DIR),
        CUELEDGER_KEY_PASSPHRASE=settings.CUELEDGER_KEY_PASSPHRASE,
        CUELEDGER_C2PA_CERT_CHAIN=str(settings.CUELEDGER_C2PA_CERT_CHAIN),
        CUELEDGER_C2PA_KEY=str(settings.CUELEDGER_C2PA_KEY),
        CELERY_VISIBILITY_TIMEOUT="5",
        CELERY_RESTORE_INTERVAL="2",
        CUELEDGER_JOB_LEASE_SECONDS="5",
        PYTHONUNBUFFERED="1",
    )
    workers: list[Worker] = []

    def start() -> Worker:
        workers.append(Worker(env, tmp_path / f"worker-{len(workers) + 1}.log"))
        return workers[-1]

    yield start
    for worker in workers:
        worker.stop()
    connection.close()


def worker_database_url() -> str:
    """The URL of the test database pytest-django made, for processes the tests start."""
    database = connection.settings_dict
    return (
        f"postgres://{database['USER']}:{database['PASSWORD'] or ''}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}"
    )


def wait_until(predicate, *, timeout: float, what: str, logs: list[Path] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    tails = "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in logs)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
