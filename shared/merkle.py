"""A service's log as an RFC 9162 Merkle tree (Certificate Transparency v2, section 2.1).

Leaves are the records' leaf hashes, `sha256(0x00 || canonical JSON of the envelope
without leafhash)` (shared.envelope), in `sequence` order. Interior nodes are
`sha256(0x01 || left || right)`. The relay keeps the tree as its compact form (the
roots of its perfect subtrees, `CompactTree`) to sign checkpoints; the audit service
recomputes the whole tree from Kafka and serves the proofs below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

EMPTY_ROOT = hashlib.sha256(b"").digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(root(leaves[:k]), root(leaves[k:]))


@dataclass
class CompactTree:
    """An append-only tree kept as the roots of its perfect subtrees, largest first.

    Appending is O(log n) and needs no earlier leaf; `root` folds the subtrees right to
    left, which is MTH for every size (the largest perfect subtree is always the left one).
    """

    size: int = 0
    peaks: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes) -> None:
        self.peaks.append(leaf)
        self.size += 1
        # A perfect subtree closes for each trailing 1 bit the new size had before (binary carry).
        carry = self.size
        while carry % 2 == 0:
            right, left = self.peaks.pop(), self.peaks.pop()
            self.peaks.append(node_hash(left, right))
            carry //= 2

    def root(self) -> bytes:
        if not self.peaks:
            return EMPTY_ROOT
        result = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            result = node_hash(peak, result)
        return result

    def to_dict(self) -> dict[str, object]:
        return {"size": self.size, "peaks": [p.hex() for p in self.peaks]}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CompactTree:
        peaks = [bytes.fromhex(p) for p in data["peaks"]]  # type: ignore[union-attr]
        tree = cls(int(data["size"]), peaks)  # type: ignore[arg-type]
        if len(peaks) != bin(tree.size).count("1"):
            raise ValueError(f"a tree of {tree.size} leaves has {bin(tree.size).count('1')} perfect subtrees, not {len(peaks)}")
        return tree


class MerkleLog:
    """A whole tree, every node kept: the root at any past size and proofs in O(log n).

    Level k holds the hashes of the aligned perfect subtrees of 2^k leaves, 32 bytes
    each in one bytearray (a million leaves take 64 MB, not a Python object per node).
    Every range RFC 9162's recursion asks for, [lo, hi) with lo a multiple of the
    smallest power of two >= hi - lo, is a few of those nodes (`range_hash`).
    """

    def __init__(self) -> None:
        self.levels: list[bytearray] = [bytearray()]
        self.size = 0

    def leaf(self, index: int) -> bytes:
        return bytes(self.levels[0][index * 32:(index + 1) * 32])

    def append(self, leaf: bytes) -> None:
        if len(leaf) != 32:
            raise ValueError("a leaf hash is 32 bytes")
        self.levels[0] += leaf
        self.size += 1
        index, level = self.size - 1, 0
        while index % 2 == 1:  # a right child completes its parent
            below = self.levels[level]
            parent = node_hash(bytes(below[(index - 1) * 32:index * 32]), bytes(below[index * 32:(index + 1) * 32]))
            level, index = level + 1, index // 2
            if len(self.levels) == level:
                self.levels.append(bytearray())
            self.levels[level] += parent

    def extend(self, leaves: list[bytes]) -> None:
        """Append many leaves: the same tree as `append` one by one, each level's new nodes made in
        one pass (the audit's replay appends a million leaves; this takes a third of the time)."""
        blob = b"".join(leaves)
        if len(blob) != 32 * len(leaves):
            raise ValueError("a leaf hash is 32 bytes")
        lo, hi = self.size, self.size + len(leaves)  # the new nodes of level 0
        self.levels[0] += blob
        self.size = hi
        level, sha256 = 0, hashlib.sha256
        # The new parents of level k+1 are those of the new nodes of level k whose pair is complete.
        while hi // 2 > lo // 2:
            below = self.levels[level]
            parents = b"".join([sha256(b"\x01" + below[64 * i:64 * i + 64]).digest() for i in range(lo // 2, hi // 2)])
            level, lo, hi = level + 1, lo // 2, hi // 2
            if len(self.levels) == level:
                self.levels.append(bytearray())
            self.levels[level] += parents

    def marks(self) -> list[int]:
        """Where each level ends now (for `tail`)."""
        return [len(level) for level in self.levels]

    def tail(self, marks: list[int]) -> tuple[int, list[bytes]]:
        """(size, the bytes of each level after `marks`): every node made since then. Nodes are
        final once made (a parent is made when its pair is complete), so a tail is all another
        MerkleLog needs to become this one (`add_tail`), without hashing anything again."""
        return self.size, [bytes(level[marks[k] if k < len(marks) else 0:]) for k, level in enumerate(self.levels)]

    def add_tail(self, size: int, parts: list[bytes]) -> None:
        """Take the nodes another MerkleLog made after this one's (its `tail` at this one's marks)."""
        for k, part in enumerate(parts):
            if k == len(self.levels):
                self.levels.append(bytearray())
            self.levels[k] += part
        self.size = size
        if len(self.levels[0]) != 32 * size or any(len(self.levels[k]) != 32 * (size >> k)
                                                    for k in range(len(self.levels))):
            raise ValueError(f"a tail that does not make a tree of {size} leaves")

    def _node(self, level: int, index: int) -> bytes:
        return bytes(self.levels[level][index * 32:(index + 1) * 32])

    def range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for the ranges of RFC 9162's recursion."""
        n = hi - lo
        if n <= 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:  # perfect: one stored node
            level = n.bit_length() - 1
            return self._node(level, lo >> level)
        k = _split(n)
        return node_hash(self.range_hash(lo, lo + k), self.range_hash(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"the log has {self.size} leaves, not {size}")
        return self.range_hash(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[size])."""
        if not 0 <= index < size <= self.size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo += k
        return proof[::-1]

    def consistency_proof(self, first: int, size: int) -> list[bytes]:
        """PROOF(first, D[size])."""
        if not 0 < first <= size <= self.size:
            raise ValueError(f"no consistency proof from {first} to {size}")
        proof: list[bytes] = []
        lo, hi, m, whole = 0, size, first, True
        while True:
            if m == hi - lo:
                if not whole:
                    proof.append(self.range_hash(lo, hi))
                return proof[::-1]
            k = _split(hi - lo)
            if m <= k:
                proof.append(self.range_hash(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self.range_hash(lo, lo + k))
                lo, m, whole = lo + k, m - k, False


# --- proofs (RFC 9162 2.1.3 and 2.1.4) ----------------------------------------------------


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]): the audit path of leaf `index` in the tree of `leaves`."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_proof(leaves[:k], index) + [root(leaves[k:])]
    return inclusion_proof(leaves[k:], index - k) + [root(leaves[:k])]


def consistency_proof(leaves: Sequence[bytes], first: int) -> list[bytes]:
    """PROOF(first, D[n]): that the tree of the first `first` leaves is a prefix of this one."""
    n = len(leaves)
    if not 0 < first <= n:
        raise ValueError(f"no consistency proof from {first} to {n}")

    def subproof(m: int, d: Sequence[bytes], whole: bool) -> list[bytes]:
        if m == len(d):
            return [] if whole else [root(d)]
        k = _split(len(d))
        if m <= k:
            return subproof(m, d[:k], whole) + [root(d[k:])]
        return subproof(m - k, d[k:], False) + [root(d[:k])]

    return subproof(first, leaves, True)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """RFC 9162 2.1.3.2."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2 (and the trivial cases: an empty first tree, equal sizes)."""
    if first == 0:
        return not proof
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the first tree is a perfect subtree
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
