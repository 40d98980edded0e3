from django.core.management.base import BaseCommand

from library.management.commands.ledger import _cue
from provenance import services


class Command(BaseCommand):
    help = "Confidential prompts: erase a cue's prompt (plaintext and salt); its ledger commitment stays valid."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        erase = sub.add_parser("erase", help="destroy the plaintext and salt of a cue's prompt")
        erase.add_argument("cue", help="the cue's id (UUID) or code (CUE-000123)")

    def handle(self, *args, action, cue, **options):
        found = _cue(cue)
        erased = services.prompt_erase(reference=found.provenance_reference)
        self.stdout.write(f"{found.code}: erased {erased} prompt(s); the ledger still verifies")
