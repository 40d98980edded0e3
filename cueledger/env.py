"""Read settings from the environment, failing loudly on a value that cannot be right.

Every setting the project takes from the environment goes through one of these functions, so that a typo in a
deployment stops the process at start-up with a message naming the variable, instead of running half-configured.
"""

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SIZE_SUFFIXES = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r}: must be at least {minimum}")
    return value


def env_size(name: str, default: int) -> int:
    """A byte count such as ``5MB``, ``512KiB`` or ``1048576``; decimal suffixes are powers of 1000."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    text = raw.strip().upper().replace(" ", "")
    digits = text.rstrip("KMGIB")
    suffix = text[len(digits) :]
    if not digits.isdigit() or suffix not in _SIZE_SUFFIXES:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a size such as 5MB, 512KiB or 1048576")
    value = int(digits) * _SIZE_SUFFIXES[suffix]
    if value <= 0:
        raise ImproperlyConfigured(f"{name}={raw!r}: must be greater than zero")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_path(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    return Path(raw).expanduser().resolve() if raw else default


def secret_key_from(var_dir: Path) -> str:
    """SECRET_KEY from the environment, or one generated once and kept in ``var_dir/secret_key`` (mode 0600)."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = var_dir / "secret_key"
    if path.exists():
        key = path.read_text().strip()
        if len(key) < 32:
            raise ImproperlyConfigured(f"{path} holds a key shorter than 32 characters; delete it to make a new one")
        return key
    var_dir.mkdir(parents=True, exist_ok=True)
    # Write a private temporary file and link it into place: a concurrent start either wins the link or reads a
    # complete key written by the winner, never an empty file.
    draft = var_dir / f".secret_key.{os.getpid()}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return path.read_text().strip()
