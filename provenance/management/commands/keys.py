from django.core.management.base import BaseCommand, CommandError

from provenance import services
from provenance.errors import ProvenanceError
from provenance.models import SigningKey


class Command(BaseCommand):
    help = "Manage the ledger's signing keys: list them, or rotate to a new one."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="every key with its validity window (ledger indexes)")
        sub.add_parser("rotate", help="retire the current key and start a new one from the next entry")

    def handle(self, *args, action, **options):
        try:
            if action == "rotate":
                key = services.key_rotate()
                self.stdout.write(f"new signing key {key.key_id}, valid from entry {key.valid_from_index}")
                return
            for key in SigningKey.objects.order_by("valid_from_index"):
                until = key.valid_until_index if key.valid_until_index is not None else "now"
                self.stdout.write(f"{key.key_id}  entries [{key.valid_from_index}, {until})  {key.name}")
        except ProvenanceError as exc:
            raise CommandError(str(exc)) from None
