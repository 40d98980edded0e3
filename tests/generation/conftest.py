import pytest
from django.utils import timezone

ISSUE_PROMPT = (
    "tense orchestral underscore, 120 bpm, D minor, 6/8, 1:30, build to a hit at 00:01:05:12 @ 24 fps, end soft"
)


@pytest.fixture
def generator(db):
    """The shipped default model, installed. Its training works are taken as registered already, so that a test
    composes without parsing the whole training corpus (tests of the memorisation guard register them for real)."""
    from generation.models import Generator
    from generation.services import generator_install

    installed = generator_install()
    Generator.objects.filter(pk=installed.pk).update(references_registered_at=timezone.now())
    installed.refresh_from_db()
    return installed
