"""``manage.py composer``: training a model from the corpus, installing it, and showing what is installed."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from generation.models import Generator, TrainingReference

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("composer", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_train_writes_a_model_with_its_manifest_and_installs_it_as_the_default(tmp_path):
    out, err = run("train", "--collections", "nottingham-dataset", "--out", str(tmp_path / "model"), "--install")

    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert [c["name"] for c in manifest["collections"]] == ["nottingham-dataset"]
    assert "nottingham-dataset: 2 works, licence LicenseRef-unknown" in out
    generator = Generator.objects.get(is_default=True)
    assert f"model {generator.version}" in out
    assert TrainingReference.objects.filter(generator=generator).count() == 2
    assert "Memorisation guard: 2 training work(s) registered" in out
    assert "[" in err  # the progress bar


def test_installing_twice_changes_nothing_and_status_shows_the_licences(tmp_path):
    run("train", "--collections", "nottingham-dataset", "--out", str(tmp_path / "model"))
    run("install", "--model", str(tmp_path / "model"))
    out, _ = run("install", "--model", str(tmp_path / "model"))

    assert "0 training work(s) registered" in out
    assert Generator.objects.count() == 1
    status, _ = run("status")
    assert "(default)" in status and "LicenseRef-unknown" in status and "commercial use: unknown" in status


def test_status_lists_the_collections_one_can_train_on():
    out, _ = run("status", "--collections")
    assert {"miscFolk", "essenFolksong", "bach"} <= set(out.split())


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("train", "--collections", "no-such-collection"), "collection_unknown"),
        (("install", "--model", "/nonexistent"), "model_missing"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, args, code):
    extra = ("--out", str(tmp_path / "m")) if args[0] == "train" else ()
    with pytest.raises(CommandError, match=code):
        run(*args, *extra)
    assert not Generator.objects.exists()
