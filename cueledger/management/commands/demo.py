"""Demo set-up for `make run`: one user per role (credentials printed) and a few cues. Safe to run again."""

import io
import json
import os
import secrets

import pretty_midi
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from cueledger.roles import LEGAL, PRODUCER, ROLES, user_create
from library import services
from library.models import Cue, ReferenceWork
from library.music.sketch import Sketch, sketch_midi
from library.services.references import ReferenceInput, reference_import

DEMO_CUES = (
    (
        "Night Approach",
        "Low strings and a lonely flute under a tense scene.",
        ("tense", "dark"),
        Sketch(tonic="D", mode="minor", tempo_bpm=72, bars=12, melody_program=73, harmony_program=48, seed=1),
    ),
    (
        "Morning Lift",
        "Bright piano and strings for an opening montage.",
        ("uplifting", "warm"),
        Sketch(tonic="G", mode="major", tempo_bpm=112, bars=16, melody_program=0, harmony_program=49, seed=2),
    ),
    (
        "Chase Through the Market",
        "Driving brass and drums.",
        ("action", "urgent"),
        Sketch(
            tonic="E", mode="minor", tempo_bpm=148, bars=24, melody_program=56, harmony_program=61, drums=True, seed=3
        ),
    ),
    (
        "Letters Never Sent",
        "A slow waltz for a quiet goodbye.",
        ("sad", "intimate"),
        Sketch(
            tonic="A",
            mode="minor",
            tempo_bpm=84,
            bars=16,
            beats_per_bar=3,
            melody_program=71,
            harmony_program=0,
            seed=4,
        ),
    ),
)

# Reference works for the similarity check, as melodies alone (the demo cues' accompaniments share their chord loops
# with each other, as much library music does). The second is the melody of "Letters Never Sent" in another key and
# tempo, so that the demo catalog shows a flagged cue with its evidence next to cues that pass.
DEMO_REFERENCES = (
    ("Harbour Lights (demo reference)", Sketch(tonic="F", mode="major", tempo_bpm=96, bars=16, seed=21)),
    (
        "An Older Waltz (demo reference)",
        Sketch(tonic="C", mode="minor", tempo_bpm=100, bars=16, beats_per_bar=3, melody_program=40, seed=4),
    ),
)


# The demo's generated cue: composed by the worker once the server runs.
DEMO_PROMPT = (
    "tense orchestral underscore, 120 bpm, D minor, 6/8, 1:30, build to a hit at 00:01:05:12 @ 24 fps, end soft"
)
DEMO_GENERATED_TITLE = "The Long Corridor"


class Command(BaseCommand):
    help = "Create demo users for every role and a few demo cues; print the users' credentials."

    def handle(self, *args, **options):
        credentials = self._users()
        producer = get_user_model().objects.get(username=f"demo-{PRODUCER}")
        if not ReferenceWork.objects.exists():
            legal = get_user_model().objects.get(username=f"demo-{LEGAL}")
            for title, sketch in DEMO_REFERENCES:
                work = ReferenceInput(title=title, midi=_melody_only(sketch), source="generated for the demo")
                reference_import(created_by=legal, work=work, recheck=False)
        self.stdout.write(f"reference works: {ReferenceWork.objects.count()}")
        created = 0
        if not Cue.objects.filter(created_by=producer).exists():
            for title, description, moods, sketch in DEMO_CUES:
                services.cue_ingest(
                    created_by=producer, title=title, description=description, moods=moods, midi=sketch_midi(sketch)
                )
                created += 1
        self.stdout.write(f"demo cues: {created} created, {Cue.objects.count()} in the catalog")
        self._generation(producer)
        self.stdout.write("\nDemo users (web login at /api/auth/login/, API: 'Authorization: Token <token>'):")
        self.stdout.write(f"  {'role':<11}{'username':<18}{'password':<26}token")
        for role in ROLES:
            entry = credentials[role]
            self.stdout.write(f"  {role:<11}{entry['username']:<18}{entry['password']:<26}{entry['token']}")

    def _generation(self, producer) -> None:
        """Install the built-in composer (its training works become reference works) and ask it for one cue."""
        from generation import services as generation_services
        from generation.models import GenerationJob

        generator = generation_services.generator_default()
        added = generation_services.training_references_register(generator=generator)
        self.stdout.write(f"composer {generator.version[:12]}: {added} training work(s) registered as references")
        # Asked for once: the job may still be queued when the demo runs again, before any worker has composed it.
        if not GenerationJob.objects.filter(created_by=producer, title=DEMO_GENERATED_TITLE).exists():
            job = generation_services.generation_request(
                created_by=producer, prompt=DEMO_PROMPT, seed="2026", title=DEMO_GENERATED_TITLE
            )
            self.stdout.write(f"generation job {job.pk} queued: {DEMO_PROMPT!r}")

    def _users(self) -> dict:
        """Create missing demo users; passwords are made once and kept in var/demo-credentials.json (0600)."""
        path = settings.VAR_DIR / "demo-credentials.json"
        saved = json.loads(path.read_text()) if path.exists() else {}
        users = get_user_model().objects
        for role in ROLES:
            username = f"demo-{role}"
            if role in saved and users.filter(username=username).exists():
                continue
            password = secrets.token_urlsafe(12)
            users.filter(username=username).delete()
            _user, token = user_create(username=username, role=role, password=password)
            saved[role] = {"username": username, "password": password, "token": token}
        for role in ROLES:
            saved[role]["token"] = Token.objects.get(user__username=saved[role]["username"]).key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(saved, handle, indent=2)
        return saved


def _melody_only(sketch: Sketch) -> bytes:
    score = pretty_midi.PrettyMIDI(io.BytesIO(sketch_midi(sketch)))
    score.instruments = [part for part in score.instruments if part.name == "Melody"]
    buffer = io.BytesIO()
    score.write(buffer)
    return buffer.getvalue()
