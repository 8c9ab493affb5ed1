#!/usr/bin/env python3
"""Check Passerelle's audit proofs yourself: nothing here comes from Passerelle's code.

The standard library does the hashing (RFC 9162, RFC 8785); the `cryptography`
package checks the Ed25519 signature of a checkpoint (C2SP signed note).

    verify.py note CHECKPOINT --key VKEY
        the checkpoint is signed by the key; prints origin, size and root
    verify.py inclusion RECORD PROOF CHECKPOINT --key VKEY
        RECORD (one event as read from Kafka) is in the log the checkpoint signs
    verify.py consistency PROOF OLD NEW --key VKEY
        the log of the OLD checkpoint is a prefix of the log of the NEW one

CHECKPOINT, OLD, NEW: a record of `audit.checkpoints` saved to a file. PROOF: the
JSON of the audit's GET /v1/proofs/inclusion or /v1/proofs/consistency. VKEY: the
`verifier_key` a service serves at GET /v1/keys, obtained from a channel you trust.
Exit status 0: verified; 1: not verified (the reason is printed).
"""

import argparse
import base64
import hashlib
import json
import sys


class NotVerified(Exception):
    pass


# --- the signed checkpoint (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) ---------------

def open_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """(origin, size, root) of a checkpoint note signed by the verifier key `name+id+base64`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    name, key_id, encoded = vkey.split("+", 2)
    key = base64.b64decode(encoded)
    if key[:1] != b"\x01" or hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() != key_id:
        raise NotVerified("the verifier key is not a well-formed Ed25519 key")
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    for line in signatures.splitlines():
        signer, _, signature = line.removeprefix("\u2014 ").partition(" ")
        blob = base64.b64decode(signature)
        if signer == name and blob[:4].hex() == key_id:
            try:
                Ed25519PublicKey.from_public_bytes(key[1:]).verify(blob[4:], text.encode())
            except InvalidSignature:
                raise NotVerified(f"the signature of {name} does not verify") from None
            origin, size, root = text.split("\n")[:3]
            return origin, int(size), base64.b64decode(root)
    raise NotVerified(f"the checkpoint is not signed by {name}")


# --- the Merkle tree (RFC 9162, section 2.1) -------------------------------------------------

def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf_hash(record: dict) -> bytes:
    """sha256(0x00 || RFC 8785 JSON of the event without `leafhash`). For what events hold
    (strings, integers, booleans, ASCII keys) RFC 8785 is sorted, compact JSON."""
    event = {k: v for k, v in record.items() if k != "leafhash"}
    if any(isinstance(v, float) for v in _values(event)):
        raise NotVerified("the event holds a number with a fraction: use an RFC 8785 library")
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(b"\x00" + text.encode()).digest()


def _values(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _values(v)
    elif isinstance(value, list):
        for v in value:
            yield from _values(v)
    else:
        yield value


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list, root: bytes) -> None:
    """RFC 9162 2.1.3.2."""
    if index >= size:
        raise NotVerified(f"event {index} is beyond the checkpoint's {size} events")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise NotVerified("the inclusion proof is too long")
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != root:
        raise NotVerified("the inclusion proof does not lead to the checkpoint's root")


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: list) -> None:
    """RFC 9162 2.1.4.2."""
    if first == second:
        if proof or first_root != second_root:
            raise NotVerified("two checkpoints of one size with two roots: a fork")
        return
    if not 0 < first < second or not proof:
        raise NotVerified(f"no consistency proof goes from {first} to {second} events")
    if first & (first - 1) == 0:
        proof = [first_root] + proof
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise NotVerified("the consistency proof is too long")
        if fn % 2 == 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if fr != first_root or sr != second_root or sn != 0:
        raise NotVerified("the newer log does not extend the older one")


# --- the commands ------------------------------------------------------------------------------

def main(argv: list) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    note = commands.add_parser("note")
    note.add_argument("checkpoint")
    inclusion = commands.add_parser("inclusion")
    inclusion.add_argument("record")
    inclusion.add_argument("proof")
    inclusion.add_argument("checkpoint")
    consistency = commands.add_parser("consistency")
    consistency.add_argument("proof")
    consistency.add_argument("old")
    consistency.add_argument("new")
    for command in (note, inclusion, consistency):
        command.add_argument("--key", required=True, help="the service's verifier key (GET /v1/keys)")
    args = parser.parse_args(argv)

    def read(path: str) -> str:
        with open(path, encoding="utf-8") as f:
            return f.read()

    try:
        if args.command == "note":
            origin, size, root = open_checkpoint(read(args.checkpoint), args.key)
            print(f"signed: {origin}, {size} events, root {root.hex()}")
        elif args.command == "inclusion":
            record, proof = json.loads(read(args.record)), json.loads(read(args.proof))
            origin, size, root = open_checkpoint(read(args.checkpoint), args.key)
            if record.get("source") != f"/{origin}":  # the log of /passerelle/<service> is passerelle/<service>
                raise NotVerified(f"the record is an event of {record.get('source')}, the checkpoint is {origin}'s")
            leaf = leaf_hash(record)
            if leaf.hex() != record.get("leafhash"):
                raise NotVerified("the record's leafhash is not the hash of its content")
            verify_inclusion(leaf, record["sequence"], size, [bytes.fromhex(p) for p in proof["proof"]], root)
            print(f"included: event {record['sequence']} ({record['type']}, {record['id']}) "
                  f"in {origin} of {size} events")
        else:
            proof = json.loads(read(args.proof))
            old = open_checkpoint(read(args.old), args.key)
            new = open_checkpoint(read(args.new), args.key)
            if old[0] != new[0]:
                raise NotVerified(f"checkpoints of two logs: {old[0]} and {new[0]}")
            verify_consistency(old[1], new[1], old[2], new[2], [bytes.fromhex(p) for p in proof["proof"]])
            print(f"consistent: {old[0]} of {old[1]} events is a prefix of its log of {new[1]} events")
    except NotVerified as failure:
        print(f"NOT VERIFIED: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
