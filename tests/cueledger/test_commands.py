"""Management commands: create_user and demo."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from generation.models import GenerationJob, TrainingReference
from library.models import Cue, ReferenceWork


def run(*args) -> list[str]:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()


def test_create_user_prints_a_working_token_on_the_last_line(db):
    lines = run("create_user", "mara", "--role", "legal")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {lines[-1]}")
    assert client.get("/api/v1/me/").json() == {"username": "mara", "roles": ["legal"]}


def test_create_user_refuses_a_taken_name_and_an_unknown_role(db):
    run("create_user", "mara", "--role", "legal")
    with pytest.raises(CommandError, match="exists already"):
        run("create_user", "mara", "--role", "producer")
    with pytest.raises(CommandError, match="invalid choice"):
        run("create_user", "otto", "--role", "composer")


def test_an_admin_may_use_the_admin_site(db):
    run("create_user", "root-of-all", "--role", "admin", "--password", "a long enough password")
    client = APIClient()
    assert client.login(username="root-of-all", password="a long enough password")
    assert client.get("/admin/").status_code == 200


def test_demo_creates_users_and_cues_once_and_reprints_the_same_credentials(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    first = run("demo")
    second = run("demo")
    credentials = first.index("")  # the users and their credentials follow the first blank line
    assert first[credentials:] == second[second.index("") :]
    assert second[2].endswith(": 0 training work(s) registered as references")
    assert Cue.objects.count() == 4 and GenerationJob.objects.count() == 1  # composed by the worker, later
    training = TrainingReference.objects.count()
    assert training > 100 and ReferenceWork.objects.count() == 2 + training
    saved = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert set(saved) == {"supervisor", "legal", "producer", "admin"}
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
    client = APIClient()
    assert client.login(username="demo-supervisor", password=saved["supervisor"]["password"])
