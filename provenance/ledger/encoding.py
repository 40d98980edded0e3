"""Byte encodings shared by every format of the ledger: RFC 8785 canonical JSON, RFC 4648 base64, strict JSON input."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

import rfc8785

from .errors import MalformedError

__all__ = ["b64", "canonical_json", "loads_json", "unb64"]


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` as RFC 8785 (JSON Canonicalization Scheme) UTF-8 bytes.

    Object members are sorted by the UTF-16 code units of their names, strings use the minimal ECMAScript escapes,
    there is no insignificant whitespace (RFC 8785 §3.2). Integers outside the IEEE 754 safe range, NaN, infinities and
    lone surrogates cannot be canonicalised and raise :class:`MalformedError` ``json_not_canonical``.
    """
    if _plain(obj):
        # For these values the standard library's compact, key-sorted output is the same text (member names below
        # U+D800 sort alike by code point and by UTF-16 code unit; both escape only '"', '\\' and controls, the
        # controls as \b \f \n \r \t or lowercase \u00xx; integers in the safe range print alike), in C.
        try:
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate: refused below, as RFC 8785 refuses it
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:  # the latter: a lone surrogate in a name
        raise MalformedError("json_not_canonical", f"value cannot be serialised as RFC 8785 JSON: {exc}") from None


_SAFE_INTEGER = 2**53 - 1  # RFC 8785 §3.2.2.3: numbers are IEEE 754 doubles; larger integers lose their value
_LOW_NAME = re.compile("[\x00-\ud7ff]*")


def _plain(obj: Any) -> bool:
    """Whether ``obj`` holds only dicts with member names below U+D800, lists, strings, booleans, None and integers
    in the safe range: no floats (ECMAScript writes those its own way), nothing the standard library would coerce."""
    pending = [obj]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is dict:
            for name, member in value.items():
                if type(name) is not str or not _LOW_NAME.fullmatch(name):
                    return False
                pending.append(member)
        elif kind is list:
            pending.extend(value)
        elif kind is int:
            if not -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
                return False
        elif kind is not str and kind is not bool and value is not None:
            return False
    return True


def b64(data: bytes) -> str:
    """Encode ``data`` in the standard base64 alphabet with padding (RFC 4648 §4)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Decode standard, padded base64 (RFC 4648 §4) strictly.

    Rejects (with :class:`MalformedError` ``base64_invalid``) non-strings, characters outside the alphabet (including
    whitespace and the URL-safe ``-_``), missing or excess padding, and non-zero trailing bits. The last rule makes the
    encoding canonical: exactly one text decodes to given bytes, so an encoded value cannot be varied while it still
    verifies (RFC 4648 §3.5 lets decoders reject such input).
    """
    if not isinstance(text, str):
        raise MalformedError("base64_invalid", f"expected a base64 string, got {type(text).__name__}")
    try:
        data = binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise MalformedError("base64_invalid", f"not strict standard base64: {_excerpt(text)}") from None
    if base64.b64encode(data).decode("ascii") != text:
        raise MalformedError("base64_invalid", f"not canonical standard base64: {_excerpt(text)}")
    return data


def loads_json(data: bytes | str, *, code: str, what: str) -> Any:
    """Parse JSON text (RFC 8259) strictly, raising :class:`MalformedError` with ``code`` on any problem.

    Bytes must be UTF-8 (RFC 8259 §8.1; a byte-order mark is refused); duplicate object member names (which RFC 8259
    §4 leaves to the parser, so two verifiers could read different values) and the non-standard constants ``NaN``,
    ``Infinity`` and ``-Infinity`` are refused.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError(code, f"{what} is not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise MalformedError(code, f"{what} starts with a byte-order mark, which JSON text must not (RFC 8259 §8.1)")
    try:
        return _DECODER.decode(text)
    except _DuplicateMember as exc:
        raise MalformedError(code, f"{what} has a duplicate member {exc.name!r}") from None
    except json.JSONDecodeError as exc:
        raise MalformedError(
            code, f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise MalformedError(code, f"{what} is not valid JSON: {exc}") from None


class _DuplicateMember(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateMember(name)
            seen.add(name)
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"the constant {name} is not JSON")


# One shared decoder: json.loads would build a new one per call, a measurable cost when checking a whole ledger.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
