from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cueledger.roles import ROLES, user_create


class Command(BaseCommand):
    help = "Create a user with one role and print its API token on the last line."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--email", default="")
        parser.add_argument("--password", help="a password for the web pages; without one, only the token works")

    def handle(self, *args, username, role, email, password, **options):
        if get_user_model().objects.filter(username=username).exists():
            raise CommandError(f"a user named {username!r} exists already")
        _user, token = user_create(username=username, role=role, email=email, password=password)
        self.stdout.write(f"created {username} with role {role}")
        self.stdout.write(token)
