"""The RFC 9162 tree: the compact form the relay keeps, and the proofs an auditor checks."""

from __future__ import annotations

import hashlib

from shared.merkle import (
    EMPTY_ROOT,
    CompactTree,
    consistency_proof,
    inclusion_proof,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + f"leaf {i}".encode()).digest() for i in range(n)]


def test_the_root_follows_rfc_9162_splits():
    a, b, c = leaves(3)
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root([a]) == a
    assert root([a, b]) == node_hash(a, b)
    # n = 3: the left subtree is the largest power of two smaller than 3.
    assert root([a, b, c]) == node_hash(node_hash(a, b), c)


def test_the_compact_tree_has_the_root_of_the_whole_tree_at_every_size():
    tree, all_leaves = CompactTree(), leaves(70)
    for i, leaf in enumerate(all_leaves, start=1):
        tree.append(leaf)
        assert tree.root() == root(all_leaves[:i]), i
        assert len(tree.peaks) == bin(i).count("1")
    again = CompactTree.from_dict(tree.to_dict())
    again.append(leaves(71)[70])
    assert again.root() == root(leaves(71))


def test_every_inclusion_proof_verifies_and_a_wrong_leaf_or_position_does_not():
    for n in (1, 2, 3, 5, 8, 13):
        d = leaves(n)
        top = root(d)
        for i in range(n):
            proof = inclusion_proof(d, i)
            assert verify_inclusion(d[i], i, n, proof, top), (n, i)
            if n > 1:
                assert not verify_inclusion(d[(i + 1) % n], i, n, proof, top)
                assert not verify_inclusion(d[i], (i + 1) % n, n, proof, top)
            assert not verify_inclusion(d[i], i, n, proof, root(d[:-1]) if n > 1 else EMPTY_ROOT)


def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not():
    d = leaves(17)
    for second in range(1, 18):
        for first in range(1, second + 1):
            proof = consistency_proof(d[:second], first)
            assert verify_consistency(first, second, root(d[:first]), root(d[:second]), proof), (first, second)
            forged = d[:first - 1] + [hashlib.sha256(b"forged").digest()] + d[first:second]
            assert not verify_consistency(first, second, root(d[:first]), root(forged), proof), (first, second)


def test_the_proofs_of_the_rfc_shape_for_a_tree_of_seven():
    # RFC 9162 2.1.5: the audit path of leaf d0 in the tree of seven is [d1-hash, h(c,d), h(e,f,g)].
    d = leaves(7)
    assert inclusion_proof(d, 0) == [d[1], node_hash(d[2], d[3]), root(d[4:7])]
    # The consistency proof between the tree of 3 and the tree of 7 is [c, d, g, l] in the RFC's names.
    assert consistency_proof(d, 3) == [d[2], d[3], node_hash(d[0], d[1]), root(d[4:7])]


def test_the_whole_log_gives_the_same_roots_and_proofs_as_the_rfc_recursion():
    from shared.merkle import MerkleLog

    d = leaves(37)
    log = MerkleLog()
    for leaf in d:
        log.append(leaf)
    assert log.size == 37 and log.leaf(5) == d[5]
    for size in range(0, 38):
        assert log.root(size) == root(d[:size]), size
    for size in range(1, 38):
        for i in range(size):
            assert log.inclusion_proof(i, size) == inclusion_proof(d[:size], i), (i, size)
        for first in range(1, size + 1):
            assert log.consistency_proof(first, size) == consistency_proof(d[:size], first), (first, size)


def test_extending_with_many_leaves_makes_the_tree_appending_one_by_one_does():
    import hashlib

    from shared.merkle import MerkleLog, root

    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(70)]
    for cut in (0, 1, 5, 32, 33, 69):
        one_by_one, together = MerkleLog(), MerkleLog()
        for leaf in leaves:
            one_by_one.append(leaf)
        together.extend(leaves[:cut])
        together.extend(leaves[cut:])
        assert together.levels == one_by_one.levels and together.size == 70
        assert together.root(cut or 1) == root(leaves[:cut or 1])
