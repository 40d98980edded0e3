"""The ledger's signing keys, their validity windows, and the per-entry check that uses them.

A key's window is expressed in ledger indexes rather than wall-clock time, so that whether a key was in force for a
record can be decided from the log itself, offline, without trusting any timestamp: key K signed entries
``[valid_from_index, valid_until_index)`` and may sign checkpoints of the sizes in between (inclusive).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, islice
from typing import Any

from . import dsse
from .encoding import b64, unb64
from .errors import LedgerError, MalformedError, VerificationError
from .merkle import leaf_hash
from .note import _check_key_name, note_key_id
from .statement import parse_statement

__all__ = ["EntryResult", "KeyRing", "LedgerKey", "check_entries", "check_entry"]

ALGORITHM = "ed25519"


def _key_malformed(detail: str) -> MalformedError:
    return MalformedError("key_malformed", detail)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LedgerKey:
    """One Ed25519 ledger key: the DSSE keyid, the signed-note key name, and its validity window in ledger indexes."""

    key_id: str
    name: str
    public_key: bytes
    valid_from_index: int
    valid_until_index: int | None  # exclusive; None while the key is current

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise _key_malformed("an Ed25519 public key is 32 bytes")
        if self.key_id != dsse.key_id(self.public_key):
            raise _key_malformed(f"key_id {self.key_id!r} is not the SHA-256 of the public key")
        _check_key_name(self.name, "key_malformed")
        if not _is_int(self.valid_from_index) or self.valid_from_index < 0:
            raise _key_malformed("valid_from_index is a non-negative integer")
        until = self.valid_until_index
        if until is not None and (not _is_int(until) or until < self.valid_from_index):
            raise _key_malformed("valid_until_index is null or an integer not below valid_from_index")

    @property
    def note_key_id(self) -> bytes:
        """The 4-byte signed-note key ID of this key under its name (C2SP signed-note, "Ed25519 signatures")."""
        return note_key_id(self.name, self.public_key)

    def valid_for_entry(self, index: int) -> bool:
        """Whether this key was in force when entry ``index`` was appended: ``from <= index < until``."""
        return self.valid_from_index <= index and (self.valid_until_index is None or index < self.valid_until_index)

    def valid_for_tree_size(self, size: int) -> bool:
        """Whether this key may sign a checkpoint of ``size`` entries: ``from <= size <= until``.

        A checkpoint of size N may be signed by the key in force when the N-th entry (index N-1) was appended, or by
        the key that took over at index N — the one that signs the rotation point.
        """
        return self.valid_from_index <= size and (self.valid_until_index is None or size <= self.valid_until_index)

    def to_json(self) -> dict[str, Any]:
        """The key as the JSON object the API serves and bundles carry."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "algorithm": ALGORITHM,
            "public_key": b64(self.public_key),
            "valid_from_index": self.valid_from_index,
            "valid_until_index": self.valid_until_index,
        }

    @classmethod
    def from_json(cls, data: Any) -> LedgerKey:
        """Parse :meth:`to_json` output strictly (:class:`MalformedError` ``key_malformed``); ignore unknown fields."""
        if not isinstance(data, dict):
            raise _key_malformed("a key is a JSON object")
        for field in ("key_id", "name", "algorithm", "public_key", "valid_from_index", "valid_until_index"):
            if field not in data:
                raise _key_malformed(f'a key has a "{field}"')
        if data["algorithm"] != ALGORITHM:
            raise _key_malformed(f"algorithm {data['algorithm']!r} is not supported (only {ALGORITHM!r})")
        if not isinstance(data["key_id"], str) or not isinstance(data["name"], str):
            raise _key_malformed('"key_id" and "name" are strings')
        try:
            public_key = unb64(data["public_key"])
        except MalformedError as exc:
            raise _key_malformed(f"public_key: {exc.detail}") from None
        return cls(
            key_id=data["key_id"],
            name=data["name"],
            public_key=public_key,
            valid_from_index=data["valid_from_index"],
            valid_until_index=data["valid_until_index"],
        )


class KeyRing:
    """The set of ledger keys a verifier trusts, indexed for DSSE (keyid) and for signed notes (name, key ID)."""

    def __init__(self, keys: Iterable[LedgerKey]) -> None:
        self._keys = tuple(keys)
        self._by_id: dict[str, LedgerKey] = {}
        self._by_note: dict[tuple[str, bytes], LedgerKey] = {}
        for key in self._keys:
            if key.key_id in self._by_id:
                raise _key_malformed(f"key {key.key_id} is listed twice")
            self._by_id[key.key_id] = key
            self._by_note[(key.name, key.note_key_id)] = key
        self._public_keys = {key.key_id: key.public_key for key in self._keys}

    @classmethod
    def from_json(cls, data: Any) -> KeyRing:
        """Build a key ring from a list of key objects, or an object with a ``keys`` or ``results`` list.

        ``results`` is a page of the API's paginated answer; a page with a ``next`` link is refused (code
        ``keyring_incomplete``) because verifying with part of the keys would blame the records for the missing ones.
        """
        if isinstance(data, dict):
            if "keys" in data:
                items = data["keys"]
            elif "results" in data:
                if data.get("next"):
                    raise MalformedError(
                        "keyring_incomplete", "the key list is one page of several; fetch every page (see 'next')"
                    )
                items = data["results"]
            else:
                raise _key_malformed('a key list is a JSON list, or an object with a "keys" or "results" list')
        else:
            items = data
        if not isinstance(items, list):
            raise _key_malformed("the keys are a JSON list")
        keys = []
        for number, item in enumerate(items):
            try:
                keys.append(LedgerKey.from_json(item))
            except MalformedError as exc:
                raise _key_malformed(f"keys[{number}]: {exc.detail}") from None
        return cls(keys)

    def to_json(self) -> list[dict[str, Any]]:
        """The keys as a JSON list of :meth:`LedgerKey.to_json` objects."""
        return [key.to_json() for key in self._keys]

    @property
    def keys(self) -> tuple[LedgerKey, ...]:
        """The keys, in the order given."""
        return self._keys

    @property
    def public_keys(self) -> dict[str, bytes]:
        """keyid -> raw public key, as :func:`provenance.ledger.dsse.open_envelope` takes it."""
        return self._public_keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[LedgerKey]:
        return iter(self._keys)

    def get(self, key_id: str) -> LedgerKey | None:
        """The key with DSSE keyid ``key_id``, or None."""
        return self._by_id.get(key_id)

    def key_for_entry(self, key_id: str, index: int) -> LedgerKey:
        """The key ``key_id``, checked to be in force for entry ``index``.

        Raises :class:`VerificationError` ``unknown_key`` or ``key_not_valid_for_entry``, naming the entry.
        """
        key = self._by_id.get(key_id)
        if key is None:
            raise VerificationError("unknown_key", f"no trusted key has keyid {key_id}", index=index)
        if not key.valid_for_entry(index):
            raise VerificationError(
                "key_not_valid_for_entry",
                f"key {key_id} ({key.name}) signs entries {_window(key)}, not entry {index}",
                index=index,
            )
        return key

    def checkpoint_keys(self) -> dict[tuple[str, bytes], bytes]:
        """(note key name, 4-byte note key ID) -> raw public key, as :func:`~provenance.ledger.note.open_note` wants."""
        return {ident: key.public_key for ident, key in self._by_note.items()}

    def key_for_checkpoint(self, name: str, note_key_id: bytes, size: int) -> LedgerKey:
        """The key that signed a checkpoint as ``name`` with ``note_key_id``, checked to be valid for tree ``size``.

        Raises :class:`VerificationError` ``checkpoint_key_not_valid``.
        """
        key = self._by_note.get((name, note_key_id))
        if key is None:
            raise VerificationError(
                "checkpoint_key_not_valid", f"no trusted key is named {name} with note key id {note_key_id.hex()}"
            )
        if not key.valid_for_tree_size(size):
            raise VerificationError(
                "checkpoint_key_not_valid",
                f"key {key.key_id} ({name}) signs checkpoints of sizes {_window(key, inclusive=True)}, not {size}",
            )
        return key


def _window(key: LedgerKey, *, inclusive: bool = False) -> str:
    if key.valid_until_index is None:
        return f"from {key.valid_from_index} on"
    if inclusive:
        return f"{key.valid_from_index} to {key.valid_until_index}"
    return f"{key.valid_from_index} to {key.valid_until_index - 1}"


@dataclass(frozen=True)
class EntryResult:
    """What :func:`check_entry` established about one ledger entry."""

    index: int
    leaf_hash: bytes
    key_id: str
    payload: bytes
    """The envelope's payload: the bytes of an in-toto Statement, checked by :func:`check_entry`."""
    predicate_type: str
    """The statement's predicateType."""

    @cached_property
    def statement(self) -> dict[str, Any]:
        """The statement, parsed from :attr:`payload` when first asked for.

        Results cross between processes in :func:`check_entries`, and most of their readers want only the predicate
        type, so they carry the statement's bytes, which cost far less to send than the objects parsed from them.
        """
        return parse_statement(self.payload)

    @property
    def subjects(self) -> list[tuple[str, str]]:
        """The statement's subjects as ``(name, sha256 hex)`` (name ``""`` when unset)."""
        return [(str(s.get("name", "")), str(s["digest"]["sha256"])) for s in self.statement["subject"]]

    def to_json(self) -> dict[str, Any]:
        """The result as a JSON object (leaf hash in base64, as in checkpoints and proofs)."""
        return {
            "index": self.index,
            "leaf_hash": b64(self.leaf_hash),
            "key_id": self.key_id,
            "predicate_type": self.predicate_type,
            "subjects": [{"name": name, "sha256": digest} for name, digest in self.subjects],
            "statement": self.statement,
        }


def check_entry(envelope: bytes, index: int, keyring: KeyRing) -> EntryResult:
    """Check ledger entry ``index``: its DSSE envelope, its key's window, and its in-toto Statement.

    The envelope must be canonical and its signature must verify with the key its keyid names (DSSE protocol.md,
    "To verify"); that key must be in force for ``index``; the payload must be an in-toto Statement v1. Every error
    names ``index``. Costs one Ed25519 verification plus a few microseconds of parsing.
    """
    try:
        payload, key_id = dsse.open_envelope(envelope, keyring.public_keys, payload_type=dsse.PAYLOAD_TYPE)
        key = keyring.key_for_entry(key_id, index)
        predicate_type = parse_statement(payload)["predicateType"]
    except LedgerError as exc:
        if exc.index == index:
            raise
        raise exc.with_index(index) from None
    # The key's own id and one copy of each type name: a batch of results then sends each string once.
    return EntryResult(index, leaf_hash(envelope), key.key_id, payload, sys.intern(predicate_type))


def _take(iterator: Iterator[tuple[int, bytes]], count: int) -> tuple[list[tuple[int, bytes]], Exception | None]:
    """Up to ``count`` items, and the exception that cut them short (kept, to be raised after the items are done)."""
    batch: list[tuple[int, bytes]] = []
    try:
        for item in islice(iterator, count):
            batch.append(item)
    except Exception as exc:
        return batch, exc
    return batch, None


def _check_batch(batch: list[tuple[int, bytes]], keyring: KeyRing) -> tuple[list[EntryResult], Exception | None]:
    """:func:`check_entry` over ``batch`` up to its first failure: the results before it, and the failure."""
    results = []
    for index, envelope in batch:
        try:
            results.append(check_entry(envelope, index, keyring))
        except Exception as exc:  # a LedgerError, or a bug: either way, after the results before it
            return results, exc
    return results, None


_WORKER_KEYRING: KeyRing | None = None


def _worker_start(keyring: KeyRing) -> None:
    global _WORKER_KEYRING
    _WORKER_KEYRING = keyring


def _worker_check(batch: list[tuple[int, bytes]]) -> tuple[list[EntryResult], Exception | None]:
    assert _WORKER_KEYRING is not None, "a worker of check_entries starts with its key ring"
    return _check_batch(batch, _WORKER_KEYRING)


def check_entries(
    entries: Iterable[tuple[int, bytes]], keyring: KeyRing, *, workers: int | None = None, chunk: int = 500
) -> Iterator[EntryResult]:
    """:func:`check_entry` over many ``(index, envelope)`` pairs, in parallel, yielding results in input order.

    Ed25519 verification dominates the cost, and ``cryptography`` holds Python's global lock for part of it, so an
    input of more than one ``chunk`` is checked in ``workers`` forked processes (by default one more than the
    CPUs). Forking is safe only where no other thread could hold a lock at that moment, so a caller with other
    threads running, a daemonic worker process (which may not have children), a smaller input or ``workers=1`` is
    checked in this process. The children only compute: they never touch what they inherit, such as a database
    connection. The input is consumed lazily, a bounded number of chunks ahead, and only in the calling thread, so
    it may read a database cursor. Errors surface in input order: the first failing entry raises as
    :func:`check_entry` would, after every result before it, and an exception from the input iterator itself is
    raised only after every entry read before it has been checked and yielded.
    """
    workers = workers or _default_workers()
    iterator = iter(entries)
    head, input_error = _take(iterator, chunk + 1)
    if workers > 1 and len(head) > chunk and input_error is None and _may_fork():
        yield from _check_in_processes(chain(head, iterator), keyring, workers, chunk)
        return
    rest = iter(head) if input_error is not None else chain(head, iterator)
    while True:
        batch, error_reading = _take(rest, chunk)
        results, error = _check_batch(batch, keyring)
        yield from results
        if error is not None:
            raise error
        if error_reading is not None:
            raise error_reading
        if len(batch) < chunk:
            if input_error is not None:
                raise input_error
            return


def _default_workers() -> int:
    """One more worker than CPUs: the calling process mostly waits for results, and the spare worker fills the
    gaps (measured on 2 CPUs: 100,000 entries in 8.4 s with 3 workers, 9.4-9.7 s with 2)."""
    cpus = os.cpu_count() or 1
    return cpus + 1 if cpus > 1 else 1


def _may_fork() -> bool:
    return threading.active_count() == 1 and not multiprocessing.current_process().daemon


def _check_in_processes(
    iterator: Iterator[tuple[int, bytes]], keyring: KeyRing, workers: int, chunk: int
) -> Iterator[EntryResult]:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start, initargs=(keyring,)) as pool:
        pending: deque[Future[tuple[list[EntryResult], Exception | None]]] = deque()
        input_error: Exception | None = None
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < 2 * workers:
                    batch, input_error = _take(iterator, chunk)
                    if batch:
                        pending.append(pool.submit(_worker_check, batch))
                    exhausted = len(batch) < chunk
                if not pending:
                    break
                results, error = pending.popleft().result()
                yield from results
                if error is not None:
                    raise error
        finally:
            for future in pending:
                future.cancel()
    if input_error is not None:
        raise input_error
