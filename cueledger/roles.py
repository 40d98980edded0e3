"""The four roles, kept as Django groups. A user's role decides what the API shows and allows."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db import transaction
from rest_framework.authtoken.models import Token

SUPERVISOR = "supervisor"
LEGAL = "legal"
PRODUCER = "producer"
ADMIN = "admin"
ROLES = (SUPERVISOR, LEGAL, PRODUCER, ADMIN)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    """The roles a user holds; a Django superuser counts as admin. Cached on the user object for the request."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_cueledger_roles", None)
    if cached is None:
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            names.add(ADMIN)
        cached = frozenset(names)
        user._cueledger_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    return bool(user_roles(user) & set(roles))


@transaction.atomic
def user_create(*, username: str, role: str, password: str | None = None, email: str = "") -> tuple[object, str]:
    """Create a user in one role and return it with its API token key."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    user_model = get_user_model()
    user = user_model.objects.create_user(username=username, email=email, password=password)
    if role == ADMIN:  # admins also run the Django admin site
        user.is_staff = user.is_superuser = True
    if password is None:
        user.set_unusable_password()
    user.save()
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    token = Token.objects.create(user=user)
    return user, token.key
