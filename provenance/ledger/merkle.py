"""The append-only Merkle tree of the ledger: RFC 9162 §2.1 (the RFC 6962 tree, with SHA-256).

Leaves are the SHA-256 leaf hashes of ledger entries (the exact bytes of each signed envelope). A
:class:`MerkleTree` keeps its nodes in a :class:`NodeStore` and needs O(log n) store reads for any root or proof, so
it works unchanged on a database table of a million nodes. The verification functions need nothing but the proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from .errors import LedgerError, VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryNodeStore",
    "MerkleTree",
    "NodeStore",
    "frontier_append",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() — the root of the empty tree (RFC 9162 §2.1.1)."""

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d(0)}) = SHA-256(0x00 || d(0)) — the hash of one leaf (RFC 9162 §2.1.1)."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) — the hash of an interior node (RFC 9162 §2.1.1).

    The 0x00/0x01 prefixes keep leaf and interior hashes apart, so no interior node can pose as a leaf (second
    preimage resistance, RFC 9162 §2.1.1).
    """
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1): the k of RFC 9162 §2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves, straight from the recursive definition of RFC 9162 §2.1.1.

    O(n) hashing; this is the reference that :class:`MerkleTree` is tested against, so it deliberately shares no code
    with it beyond :func:`node_hash`.
    """

    def mth(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return leaf_hashes[lo]
        k = _split(hi - lo)
        return node_hash(mth(lo, lo + k), mth(lo + k, hi))

    if not leaf_hashes:
        return EMPTY_ROOT
    return mth(0, len(leaf_hashes))


def frontier_append(frontier: dict[int, bytes], size: int, leaf: bytes) -> list[tuple[int, int, bytes]]:
    """Append the leaf hash ``leaf`` as leaf number ``size`` to ``frontier``, the right border of a tree of ``size``
    leaves (level -> hash of the perfect subtree there, one per set bit of ``size``), in place.

    Returns the perfect subtrees the leaf completes (RFC 9162 §2.1.1) as ``(level, index, hash)``, level 0 first:
    the leaf itself, then one more for each trailing 1 bit of ``size``, each merging the border's subtree at that
    level with the one just completed to its right. ``frontier`` must fit ``size`` (callers check it, or pass a
    copy): a level it lacks raises KeyError with the levels below already merged.
    """
    index, level, value = size, 0, leaf
    new = [(0, index, leaf)]
    while index & 1:
        value = node_hash(frontier.pop(level), value)
        index >>= 1
        level += 1
        new.append((level, index, value))
    frontier[level] = value
    return new


class NodeStore(Protocol):
    """Storage of the tree's perfect subtrees.

    Node ``(level, index)`` is the hash of the perfect subtree over leaves ``[index * 2**level, (index + 1) *
    2**level)``; level 0 nodes are the leaf hashes. Only complete subtrees are ever stored, so a stored node never
    changes once written: a store may cache, replicate or batch freely.
    """

    def get(self, level: int, index: int) -> bytes | None:
        """The hash of node ``(level, index)``, or None if it is not stored."""
        ...

    def put(self, level: int, index: int, value: bytes) -> None:
        """Store the hash of node ``(level, index)``."""
        ...


class MemoryNodeStore(NodeStore):
    """A :class:`NodeStore` in a dict, for tests, tools and the offline verifier."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}

    def get(self, level: int, index: int) -> bytes | None:
        """The hash of node ``(level, index)``, or None."""
        return self.nodes.get((level, index))

    def put(self, level: int, index: int, value: bytes) -> None:
        """Store the hash of node ``(level, index)``."""
        self.nodes[(level, index)] = value

    def __len__(self) -> int:
        return len(self.nodes)


class MerkleTree:
    """An append-only RFC 9162 Merkle tree over a :class:`NodeStore`.

    ``size`` is the number of leaves the store already holds. The tree keeps in memory only the "frontier" — the
    perfect subtrees whose concatenation is the whole tree, one per set bit of ``size`` — so appending reads nothing
    after the first call and the current root costs no store read at all.
    """

    def __init__(self, store: NodeStore, size: int = 0) -> None:
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"tree size must be a non-negative integer, not {size!r}")
        self._store = store
        self._size = size
        # level -> hash of the frontier subtree at that level; None until first needed.
        self._frontier: dict[int, bytes] | None = None

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes]) -> MerkleTree:
        """The tree of ``leaves`` (leaf hashes, in order) in a new :class:`MemoryNodeStore`, built a level at a time.

        The same nodes as appending the leaves one by one — every perfect subtree (RFC 9162 §2.1.1), each level
        hashing adjacent pairs of the one below — without the per-append bookkeeping; for rebuilding a whole tree.
        """
        store = MemoryNodeStore()
        level, nodes = 0, list(leaves)
        if any(not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE for leaf in nodes):
            raise ValueError(f"a leaf must be a {HASH_SIZE}-byte leaf hash")
        while nodes:
            store.nodes.update(((level, index), value) for index, value in enumerate(nodes))
            nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
            level += 1
        return cls(store, size=len(leaves))

    @property
    def size(self) -> int:
        """The number of leaves in the tree."""
        return self._size

    @property
    def store(self) -> NodeStore:
        """The node store the tree reads and writes."""
        return self._store

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append the leaf hash ``leaf`` as leaf number ``size`` (RFC 9162 §2.1.1); O(log n).

        Stores the leaf and every perfect subtree it completes, and returns those nodes as ``(level, index, hash)``,
        level 0 first. The tree's state changes only after every ``put`` has returned, so a failed store write can be
        retried by appending the same leaf again (the nodes are immutable, re-writing them is harmless).
        """
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf must be a {HASH_SIZE}-byte leaf hash")
        frontier = dict(self._load_frontier())
        new = frontier_append(frontier, self._size, leaf)
        for node_level, node_index, node_value in new:
            self._store.put(node_level, node_index, node_value)
        self._frontier = frontier
        self._size += 1
        return new

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]) (RFC 9162 §2.1.1): the root of the first ``size`` leaves, by default all; O(log n) reads."""
        size = self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        if size == self._size:
            frontier = self._load_frontier()
            levels = sorted(frontier)
            value = frontier[levels[0]]
            for level in levels[1:]:
                value = node_hash(frontier[level], value)
            return value
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1: the audit path of leaf ``index`` in the tree of ``size``.

        The path lists the sibling subtree hashes from the leaf up to the root; O(log n) store reads, because at most
        one sibling (on the right edge of the tree) is not a stored perfect subtree.
        """
        size = self._check_size(size)
        if not isinstance(index, int) or not 0 <= index < size:
            raise ValueError(f"leaf index {index!r} is not in a tree of size {size}")
        siblings: list[tuple[int, int]] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                siblings.append((lo + k, hi))
                hi = lo + k
            else:
                siblings.append((lo, lo + k))
                lo += k
        # The RFC's recursion appends each sibling after the deeper part of the path: bottom-up order.
        return [self._subtree(a, b) for a, b in reversed(siblings)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1; O(log n) store reads.

        For ``old_size`` 0 or equal to ``new_size`` the proof is empty (the RFC defines proofs for 0 < m < n; an empty
        tree is a prefix of every tree and a tree is consistent with itself when the roots are equal).
        """
        new_size = self._check_size(new_size)
        if not isinstance(old_size, int) or not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size!r} is not between 0 and {new_size}")
        if old_size in (0, new_size):
            return []
        ranges: list[tuple[int, int]] = []
        lo, hi, m, whole = 0, new_size, old_size, True
        while True:
            if m == hi - lo:
                # SUBPROOF(m, D[m], b): nothing if this subtree is the old tree itself, else its hash.
                if not whole:
                    ranges.append((lo, hi))
                break
            k = _split(hi - lo)
            if m <= k:
                ranges.append((lo + k, hi))
                hi = lo + k
            else:
                ranges.append((lo, lo + k))
                lo += k
                m -= k
                whole = False
        return [self._subtree(a, b) for a, b in reversed(ranges)]

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        if not isinstance(size, int) or not 0 <= size <= self._size:
            raise ValueError(f"tree size {size!r} is not between 0 and {self._size}")
        return size

    def _node(self, level: int, index: int) -> bytes:
        value = self._store.get(level, index)
        if value is None:
            raise LedgerError(
                "node_missing", f"the node store has no node (level {level}, index {index}) for a tree of {self._size}"
            )
        # Database drivers hand back memoryview or bytearray for binary columns; proofs must be plain bytes.
        return value if type(value) is bytes else bytes(value)

    def _subtree(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) from stored perfect subtrees.

        An aligned power-of-two range is one stored node; any other range splits at the RFC's k. For the ranges
        proofs use, the left part of every split is aligned and perfect, so this is O(log n) reads.
        """
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            return self._node(level, start >> level)
        k = _split(n)
        return node_hash(self._subtree(start, start + k), self._subtree(start + k, end))

    def _load_frontier(self) -> dict[int, bytes]:
        if self._frontier is None:
            frontier = {}
            for level in range(self._size.bit_length()):
                if self._size >> level & 1:
                    frontier[level] = self._node(level, (self._size >> level) - 1)
            self._frontier = frontier
        return self._frontier


def _fail_inclusion(index: int, detail: str) -> VerificationError:
    return VerificationError("inclusion_proof_invalid", detail, index=index)


def _valid_hashes(values: Sequence[bytes]) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` leaves whose root is ``root``.

    The algorithm of RFC 9162 §2.1.3.2, which also checks the proof's length: it must be used up exactly when the
    walk reaches the root. Raises :class:`VerificationError` ``inclusion_proof_invalid`` (naming ``index``) on any
    failure, including ``index >= size`` and hashes that are not 32 bytes.
    """
    if not isinstance(index, int) or not isinstance(size, int) or not 0 <= index < size:
        raise _fail_inclusion(index, f"leaf index {index} is not in a tree of size {size}")
    if not _valid_hashes([leaf_hash, root, *proof]):
        raise _fail_inclusion(index, f"every hash of an inclusion proof must be {HASH_SIZE} bytes")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise _fail_inclusion(index, f"the proof has more than the {len(proof)} hashes a tree of {size} needs")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # fn == sn and even: this node has no right sibling at the next levels; climb to where it is a right child.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _fail_inclusion(index, f"the proof has too few hashes ({len(proof)}) for a tree of {size}")
    if r != root:
        raise _fail_inclusion(index, f"the proof does not lead to the root of the tree of size {size}")


def _fail_consistency(detail: str) -> VerificationError:
    return VerificationError("consistency_proof_invalid", detail)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``old_size`` with ``old_root`` is a prefix of the tree of ``new_size`` with ``new_root``.

    The algorithm of RFC 9162 §2.1.4.2 for 0 < old_size < new_size. For equal sizes the proof must be empty and the
    roots equal; for old_size 0 the proof must be empty and the old root must be the empty tree's. Raises
    :class:`VerificationError` ``consistency_proof_invalid`` on any failure.
    """
    if not isinstance(old_size, int) or not isinstance(new_size, int) or not 0 <= old_size <= new_size:
        raise _fail_consistency(f"sizes {old_size} -> {new_size}: a log never shrinks")
    if not _valid_hashes([old_root, new_root, *proof]):
        raise _fail_consistency(f"every hash of a consistency proof must be {HASH_SIZE} bytes")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise _fail_consistency(f"the proof from size {old_size} to {new_size} must be empty")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise _fail_consistency("a tree of size 0 must have the empty root")
        if old_size == new_size and old_root != new_root:
            raise _fail_consistency(f"two different roots for the same tree size {new_size}: the log has forked")
        return
    if not proof:
        raise _fail_consistency(f"the proof from size {old_size} to {new_size} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one; the proof leaves its root out since the verifier has it.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise _fail_consistency(f"the proof has more hashes than a proof from {old_size} to {new_size} needs")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _fail_consistency(f"the proof has too few hashes for a proof from {old_size} to {new_size}")
    if fr != old_root:
        raise _fail_consistency(f"the proof does not lead to the root of the old tree of size {old_size}")
    if sr != new_root:
        raise _fail_consistency(f"the proof does not lead to the root of the new tree of size {new_size}")
