"""RFC 9162 §2.1 Merkle tree: published transparency-dev vectors, then properties over random trees."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provenance.ledger import (
    EMPTY_ROOT,
    LedgerError,
    MemoryNodeStore,
    MerkleTree,
    VerificationError,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

from .helpers import load_vector

V = load_vector("rfc6962_transparency_dev.json")
LEAVES = [bytes.fromhex(h) for h in V["leaves_hex"]]
LEAF_HASHES = [leaf_hash(data) for data in LEAVES]
ROOTS = [bytes.fromhex(h) for h in V["roots_hex"]]


def tree_of(leaf_hashes: list[bytes]) -> MerkleTree:
    tree = MerkleTree(MemoryNodeStore())
    for value in leaf_hashes:
        tree.append(value)
    return tree


def hashes(hex_list: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hex_list]


# ---------------------------------------------------------------- published vectors


def test_hasher_vectors():
    assert bytes.fromhex(V["hasher"]["empty_root_hex"]) == EMPTY_ROOT == root_of([])
    for case in V["hasher"]["leaf"]:
        assert leaf_hash(bytes.fromhex(case["data_hex"])).hex() == case["hash_hex"]
    for case in V["hasher"]["node"]:
        assert node_hash(bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"])).hex() == case["hash_hex"]


def test_roots_match_published_vectors():
    tree = MerkleTree(MemoryNodeStore())
    assert tree.root() == EMPTY_ROOT
    for size, (value, want) in enumerate(zip(LEAF_HASHES, ROOTS, strict=True), start=1):
        tree.append(value)
        assert root_of(LEAF_HASHES[:size]) == want
        assert tree.root() == want
    for size in range(1, 9):
        assert tree.root(size) == ROOTS[size - 1]


@pytest.mark.parametrize("case", V["inclusion_proofs"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}")
def test_inclusion_proofs_match_published_vectors(case):
    index, size, want = case["leaf_index"], case["tree_size"], hashes(case["proof_hex"])
    tree = tree_of(LEAF_HASHES)
    assert tree.inclusion_proof(index, size) == want
    verify_inclusion(LEAF_HASHES[index], index, size, want, ROOTS[size - 1])


@pytest.mark.parametrize("case", V["consistency_proofs"], ids=lambda c: f"{c['size1']}-to-{c['size2']}")
def test_consistency_proofs_match_published_vectors(case):
    m, n, want = case["size1"], case["size2"], hashes(case["proof_hex"])
    tree = tree_of(LEAF_HASHES)
    assert tree.consistency_proof(m, n) == want
    verify_consistency(m, n, ROOTS[m - 1], ROOTS[n - 1], want)


def _corruptions_inclusion(index, size, proof, root, leaf):
    """The corruptions transparency-dev's verify_test.go applies (corruptInclusionProof), generated here."""
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    probes = [
        (index - 1, size, root, leaf, proof),
        (index + 1, size, root, leaf, proof),
        (index ^ 2, size, root, leaf, proof),
        (index, size * 2, root, leaf, proof),
        (index, size // 2, root, leaf, proof),
        (index, size, root, b"WrongLeaf", proof),
        (index, size, EMPTY_ROOT, leaf, proof),
        (index, size, some, leaf, proof),
        (index, size, root, leaf, [*proof, b""]),
        (index, size, root, leaf, [*proof, root]),
        (index, size, root, leaf, [b"", *proof]),
        (index, size, root, leaf, [root, *proof]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((index, size, root, leaf, flipped))
    if proof:
        probes.append((index, size, root, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append((index, size, root, leaf, [proof[0], some, *proof[1:]]))
    return probes


@pytest.mark.parametrize("case", V["inclusion_proofs"][1:], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}")
def test_corrupted_published_inclusion_proofs_fail(case):
    index, size, proof = case["leaf_index"], case["tree_size"], hashes(case["proof_hex"])
    for probe in _corruptions_inclusion(index, size, proof, ROOTS[size - 1], LEAF_HASHES[index]):
        p_index, p_size, p_root, p_leaf, p_proof = probe
        with pytest.raises(VerificationError) as raised:
            verify_inclusion(p_leaf, p_index, p_size, p_proof, p_root)
        assert raised.value.code == "inclusion_proof_invalid"
        assert raised.value.index == p_index


@pytest.mark.parametrize("case", V["consistency_proofs"][1:], ids=lambda c: f"{c['size1']}-to-{c['size2']}")
def test_corrupted_published_consistency_proofs_fail(case):
    m, n, proof = case["size1"], case["size2"], hashes(case["proof_hex"])
    r1, r2 = ROOTS[m - 1], ROOTS[n - 1]
    probes = [
        (m - 1, n, r1, r2, proof),
        (m + 1, n, r1, r2, proof),
        (m ^ 2, n, r1, r2, proof),
        (m, n * 2, r1, r2, proof),
        (m, n // 2, r1, r2, proof),
        (m, n, b"WrongRoot", r2, proof),
        (m, n, r1, b"WrongRoot", proof),
        (m, n, r2, r1, proof),
        (m, n, r1, r2, []),
        (m, n, r1, r2, [*proof, b""]),
        (m, n, r1, r2, [*proof, r1]),
        (m, n, r1, r2, [*proof, r2]),
        (m, n, r1, r2, [b"", *proof]),
        (m, n, r1, r2, [r1, *proof]),
        (m, n, r1, r2, [r2, *proof]),
        (m, n, r1, r2, [proof[0], *proof]),
        (m, n, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((m, n, r1, r2, flipped))
    for probe in probes:
        with pytest.raises(VerificationError) as raised:
            verify_consistency(*probe)
        assert raised.value.code == "consistency_proof_invalid"


def test_trivial_consistency_cases():
    """verify_test.go TestVerifyConsistency, with the empty tree's root required for size 0."""
    r1, r2 = ROOTS[0], ROOTS[1]
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 1, EMPTY_ROOT, r1, [])
    verify_consistency(1, 1, r2, r2, [])
    for probe in [
        (1, 1, r1, r2, []),  # same size, different roots: a fork
        (1, 0, r1, r2, []),  # time travel
        (2, 1, r1, r2, []),
        (1, 2, r1, r2, []),  # empty proof
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),  # roots match but the proof is not empty
        (0, 1, EMPTY_ROOT, r1, [EMPTY_ROOT]),
        (1, 1, r1, r1, [EMPTY_ROOT]),
        (0, 1, r1, r2, []),  # a tree of size 0 has the empty root
    ]:
        with pytest.raises(VerificationError):
            verify_consistency(*probe)


def test_single_entry_inclusion():
    """verify_test.go TestVerifyInclusionSingleEntry: the root of a 1-leaf tree is the leaf hash."""
    value = leaf_hash(b"data")
    verify_inclusion(value, 0, 1, [], value)
    for leaf, root in [(value, b""), (b"", value), (b"", b"")]:
        with pytest.raises(VerificationError):
            verify_inclusion(leaf, 0, 1, [], root)
    for index, size in [(0, 0), (1, 0), (1, 1), (2, 1)]:
        with pytest.raises(VerificationError):
            verify_inclusion(value, index, size, [], value)


def _expected_from_ranges(leaf_hashes, ranges):
    return [root_of(leaf_hashes[start:end]) for start, end in ranges]


@pytest.mark.parametrize("case", V["inclusion_shapes"], ids=lambda c: f"{c['leaf_index']}-of-{c['tree_size']}")
def test_inclusion_proof_shapes(case):
    leaf_hashes = [leaf_hash(b"leaf %d" % i) for i in range(case["tree_size"])]
    tree = tree_of(leaf_hashes)
    assert tree.inclusion_proof(case["leaf_index"]) == _expected_from_ranges(leaf_hashes, case["ranges"])


@pytest.mark.parametrize("case", V["consistency_shapes"], ids=lambda c: f"{c['size1']}-to-{c['size2']}")
def test_consistency_proof_shapes(case):
    leaf_hashes = [leaf_hash(b"leaf %d" % i) for i in range(case["size2"])]
    tree = tree_of(leaf_hashes)
    assert tree.consistency_proof(case["size1"]) == _expected_from_ranges(leaf_hashes, case["ranges"])


def test_out_of_range_arguments_raise_value_error():
    tree = tree_of([leaf_hash(b"leaf %d" % i) for i in range(8)])
    for case in V["inclusion_errors"]:
        with pytest.raises(ValueError):
            tree.inclusion_proof(case["leaf_index"], case["tree_size"])
    for case in V["consistency_errors"]:
        with pytest.raises(ValueError):
            tree.consistency_proof(case["size1"], case["size2"])
    for bad in [
        lambda: tree.root(9),
        lambda: tree.root(-1),
        lambda: tree.inclusion_proof(-1),
        lambda: tree.inclusion_proof(0, 9),
        lambda: tree.consistency_proof(-1),
        lambda: tree.consistency_proof(3, 9),
        lambda: tree.append(b"short"),
        lambda: MerkleTree(MemoryNodeStore(), -1),
    ]:
        with pytest.raises(ValueError):
            bad()


# ---------------------------------------------------------------- the tree over its store


class CountingStore(MemoryNodeStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, level, index):
        self.reads += 1
        return super().get(level, index)


def test_append_stores_every_completed_perfect_subtree():
    store = MemoryNodeStore()
    tree = MerkleTree(store)
    leaves = [leaf_hash(b"%d" % i) for i in range(8)]
    assert tree.append(leaves[0]) == [(0, 0, leaves[0])]
    h01 = node_hash(leaves[0], leaves[1])
    assert tree.append(leaves[1]) == [(0, 1, leaves[1]), (1, 0, h01)]
    assert tree.append(leaves[2]) == [(0, 2, leaves[2])]
    h23 = node_hash(leaves[2], leaves[3])
    assert tree.append(leaves[3]) == [(0, 3, leaves[3]), (1, 1, h23), (2, 0, node_hash(h01, h23))]
    for value in leaves[4:]:
        tree.append(value)
    # 8 leaves + 4 + 2 + 1: only perfect subtrees.
    assert len(store) == 15
    assert store.get(3, 0) == root_of(leaves)


class FailingOnce(MemoryNodeStore):
    """A store whose write of one node fails the first time, as a database write can."""

    def __init__(self, level: int, index: int) -> None:
        super().__init__()
        self.failing = (level, index)

    def put(self, level, index, value):
        if (level, index) == self.failing:
            self.failing = None
            raise OSError("the store is down")
        super().put(level, index, value)


def test_an_append_whose_store_write_failed_can_be_retried():
    leaves = [leaf_hash(b"%d" % i) for i in range(8)]
    tree = MerkleTree(FailingOnce(level=2, index=0))  # the fourth leaf's last node
    for value in leaves[:3]:
        tree.append(value)
    with pytest.raises(OSError):
        tree.append(leaves[3])
    assert tree.size == 3 and tree.root() == root_of(leaves[:3])  # the tree did not move
    for value in leaves[3:]:
        tree.append(value)
    assert tree.root() == root_of(leaves) and tree.store.get(2, 0) == root_of(leaves[:4])


def test_tree_resumes_from_a_store_it_did_not_write():
    leaves = [leaf_hash(b"%d" % i) for i in range(1000)]
    first = MerkleTree(MemoryNodeStore())
    for value in leaves[:777]:
        first.append(value)
    resumed = MerkleTree(first.store, size=777)
    assert resumed.root() == root_of(leaves[:777])
    for value in leaves[777:]:
        resumed.append(value)
    assert resumed.root() == root_of(leaves)
    assert resumed.inclusion_proof(776) == tree_of(leaves).inclusion_proof(776)


def test_reads_are_logarithmic():
    store = CountingStore()
    tree = MerkleTree(store)
    for i in range(5000):
        tree.append(leaf_hash(b"%d" % i))
    assert store.reads == 0  # appends use the in-memory frontier
    for check in [
        lambda: tree.root(4321),
        lambda: tree.inclusion_proof(1234),
        lambda: tree.inclusion_proof(4999),
        lambda: tree.consistency_proof(1234, 4321),
        lambda: MerkleTree(store, 4999).root(),
    ]:
        store.reads = 0
        check()
        assert 0 < store.reads <= 2 * 13 + 2  # log2(5000) < 13


def test_missing_node_is_reported():
    tree = MerkleTree(MemoryNodeStore(), size=3)
    with pytest.raises(LedgerError) as raised:
        tree.root()
    assert raised.value.code == "node_missing"


# ---------------------------------------------------------------- properties

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TREES: dict[int, tuple[list[bytes], MerkleTree]] = {}


def cached_tree(size: int) -> tuple[list[bytes], MerkleTree]:
    """Trees are expensive to rebuild for every example; the properties only read them."""
    if size not in _TREES:
        leaves = [leaf_hash(b"entry %d" % i) for i in range(size)]
        _TREES[size] = (leaves, tree_of(leaves))
    return _TREES[size]


@st.composite
def size_and_index(draw):
    size = draw(st.integers(min_value=1, max_value=2000))
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def two_sizes(draw):
    n = draw(st.integers(min_value=1, max_value=2000))
    return draw(st.integers(min_value=1, max_value=n)), n


def _mutations(proof: list[bytes]):
    """Every single-bit flip, every truncation, and extensions at both ends."""
    for i, element in enumerate(proof):
        for bit in range(len(element) * 8):
            mutated = bytearray(element)
            mutated[bit // 8] ^= 1 << (bit % 8)
            yield [*proof[:i], bytes(mutated), *proof[i + 1 :]]
    for cut in range(len(proof)):
        yield proof[:cut]
    yield [*proof, proof[-1] if proof else EMPTY_ROOT]
    yield [EMPTY_ROOT, *proof]


@SETTINGS
@given(size_and_index())
def test_inclusion_proofs_verify_and_mutations_fail(case):
    size, index = case
    leaves, big = cached_tree(2000)
    root = root_of(leaves[:size])
    assert big.root(size) == root
    proof = big.inclusion_proof(index, size)
    verify_inclusion(leaves[index], index, size, proof, root)
    for mutated in _mutations(proof):
        with pytest.raises(VerificationError):
            verify_inclusion(leaves[index], index, size, mutated, root)
    for wrong_index in {index - 1, index + 1, index ^ 1, index ^ 2, size}:
        if wrong_index != index:
            with pytest.raises(VerificationError):
                verify_inclusion(leaves[index], wrong_index, size, proof, root)
    # Not size +- 1: a tree of 5 and one of 6 give leaf 0 paths of the same shape, so a proof for one is a proof
    # for the other with the root it leads to. Doubling or halving the size always changes the path.
    for wrong_size in {size * 2, size // 2}:
        with pytest.raises(VerificationError):
            verify_inclusion(leaves[index], index, wrong_size, proof, root)


@SETTINGS
@given(two_sizes())
def test_consistency_proofs_verify_and_mutations_fail(case):
    m, n = case
    leaves, big = cached_tree(2000)
    old_root, new_root = root_of(leaves[:m]), root_of(leaves[:n])
    proof = big.consistency_proof(m, n)
    verify_consistency(m, n, old_root, new_root, proof)
    if m == n:
        assert proof == []
        return
    for mutated in _mutations(proof):
        with pytest.raises(VerificationError):
            verify_consistency(m, n, old_root, new_root, mutated)
    # A fork: the same old size with a different history.
    forked = root_of([leaf_hash(b"forged"), *leaves[1:m]])
    with pytest.raises(VerificationError):
        verify_consistency(m, n, forked, new_root, proof)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=8), min_size=1, max_size=300))
def test_append_and_root_match_reference_for_every_prefix(data):
    leaves = [leaf_hash(item) for item in data]
    tree = MerkleTree(MemoryNodeStore())
    for size, value in enumerate(leaves, start=1):
        tree.append(value)
        assert tree.root() == root_of(leaves[:size])
    for size in range(len(leaves) + 1):
        assert tree.root(size) == root_of(leaves[:size])


def test_store_may_return_other_bytes_like_values():
    class ViewStore(MemoryNodeStore):
        def get(self, level, index):
            value = super().get(level, index)
            return None if value is None else memoryview(value)

    leaves = [leaf_hash(b"%d" % i) for i in range(13)]
    tree = MerkleTree(ViewStore())
    for value in leaves:
        tree.append(value)
    resumed = MerkleTree(tree.store, size=13)
    proof = resumed.inclusion_proof(5)
    assert all(type(p) is bytes for p in proof)
    verify_inclusion(leaves[5], 5, 13, proof, resumed.root())
    verify_consistency(7, 13, resumed.root(7), resumed.root(), resumed.consistency_proof(7))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=300))
def test_a_tree_built_from_its_leaves_holds_what_appends_would(data):
    leaves = [leaf_hash(item) for item in data]
    appended = MerkleTree(MemoryNodeStore())
    for value in leaves:
        appended.append(value)
    built = MerkleTree.from_leaves(leaves)
    assert built.size == len(leaves)
    assert built.store.nodes == appended.store.nodes
    assert built.root() == root_of(leaves)
    if leaves:
        assert built.inclusion_proof(len(leaves) // 2) == appended.inclusion_proof(len(leaves) // 2)


def test_a_tree_built_from_leaves_refuses_what_is_not_a_leaf_hash():
    with pytest.raises(ValueError, match="32-byte"):
        MerkleTree.from_leaves([leaf_hash(b"a"), b"short"])
