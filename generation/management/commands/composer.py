"""``manage.py composer train|install|status``: the built-in composer's model, its training data and licences."""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from cueledger.progress import ProgressBar
from generation import services
from generation.composer import ComposerError
from generation.composer.training import DEFAULT_COLLECTIONS, available_collections, model_write, train
from generation.errors import GenerationError
from generation.models import Generator


class Command(BaseCommand):
    help = "The built-in composer: train its melody model from music21's corpus, install a model, show the models."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        training = sub.add_parser("train", help="train a model from music21's bundled corpus and write it to a folder")
        training.add_argument(
            "--collections",
            nargs="+",
            default=list(DEFAULT_COLLECTIONS),
            metavar="NAME",
            help=f"corpus collections to learn from (default: {' '.join(DEFAULT_COLLECTIONS)}); "
            "see `composer status --collections`",
        )
        training.add_argument("--out", type=Path, required=True, help="folder for model.json and manifest.json")
        training.add_argument("--install", action="store_true", help="install the trained model as the default")
        installing = sub.add_parser(
            "install",
            help="install a trained model (the shipped one by default) and register its training works as "
            "reference works, so that its cues are checked against them",
        )
        installing.add_argument("--model", type=Path, help="folder holding model.json and manifest.json")
        installing.add_argument("--not-default", action="store_true", help="install without making it the default")
        status = sub.add_parser("status", help="the installed models and their licences")
        status.add_argument("--collections", action="store_true", help="list the corpus collections one can train on")

    def handle(self, *args, action, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except (ComposerError, GenerationError) as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None

    def _train(self, *, collections, out, install, **options):
        started = time.monotonic()
        progress = None

        def report(done: int, total: int) -> None:
            nonlocal progress
            if progress is None:
                progress = ProgressBar(total, self.stderr)
            progress.step(f"work {done}")

        trained = train(collections, progress=report)
        if progress is not None:
            progress.finish()
        model_write(trained, out)
        self.stdout.write(
            f"Trained on {len(trained.manifest['works'])} works in {time.monotonic() - started:.1f} s: "
            f"model {trained.model.version} in {out}"
        )
        for collection in trained.manifest["collections"]:
            self.stdout.write(
                f"  {collection['name']}: {collection['work_count']} works, licence {collection['license']}"
            )
        if install:
            self._install(model=out, not_default=False)

    def _install(self, *, model, not_default, **options):
        directory = model or services.DEFAULT_MODEL_DIR
        with transaction.atomic():
            generator = services.generator_install(directory=directory, make_default=not not_default)
        works = len(generator.manifest["works"])
        self.stdout.write(f"Installed {generator.name} {generator.version} ({works} training works).")
        progress = ProgressBar(works, self.stderr)
        with transaction.atomic():
            added = services.training_references_register(
                generator=generator, progress=lambda done, total: progress.step(f"training work {done}")
            )
        progress.finish()
        self.stdout.write(f"Memorisation guard: {added} training work(s) registered as reference works.")

    def _status(self, *, collections, **options):
        if collections:
            for name in available_collections():
                self.stdout.write(name)
            return
        generators = list(Generator.objects.all())
        if not generators:
            self.stdout.write("No model is installed yet; `composer install` installs the shipped one.")
        for generator in generators:
            constraints = services.licence_constraints(generator)
            default = " (default)" if generator.is_default else ""
            self.stdout.write(f"{generator.name} {generator.version}{default}")
            self.stdout.write(
                f"  training licences: {', '.join(constraints['training_licences'])}; "
                f"commercial use: {_yes_no(constraints['commercial_use'])}; "
                f"training works registered: {generator.training_references.count()}"
            )


def _yes_no(value: bool | None) -> str:
    return {True: "allowed", False: "not allowed", None: "unknown"}[value]
