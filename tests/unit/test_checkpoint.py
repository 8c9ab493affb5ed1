"""Signed checkpoints: the formats of C2SP signed-note and tlog-checkpoint, checked against
the known-answer vector of Go's golang.org/x/mod/sumdb/note, so that tools we did not
write accept what the relays publish."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.checkpoint import Checkpoint, InvalidNote, NoteSigner, open_note, verifier_key

# golang.org/x/mod/sumdb/note's documented example key and note.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + ("\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6Ryy"
                     "BwJnAM=\n")


def go_signer() -> NoteSigner:
    seed = base64.b64decode(GO_SIGNER_KEY.split("+", 4)[4])[1:]  # after the 0x01 type byte
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_notes_are_signed_byte_for_byte_as_go_signs_them():
    signer = go_signer()
    assert signer.sign(GO_TEXT) == GO_NOTE
    assert verifier_key(signer.name, signer.public_key) == GO_VERIFIER_KEY
    assert signer.describe()["verifier_key"] == GO_VERIFIER_KEY


def test_a_verifier_key_reads_back_and_a_wrong_one_is_refused():
    from shared.checkpoint import parse_verifier_key

    name, key = parse_verifier_key(GO_VERIFIER_KEY)
    assert name == "PeterNeumann" and key == go_signer().public_key
    for bad in ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "PeterNeumann", "a+b+c"):
        with pytest.raises(ValueError):
            parse_verifier_key(bad)


def test_a_note_opens_only_with_its_key_and_its_exact_text():
    signer = go_signer()
    assert open_note(GO_NOTE, "PeterNeumann", signer.public_key) == GO_TEXT
    with pytest.raises(InvalidNote):
        open_note(GO_NOTE.replace("problem,", "problem;"), "PeterNeumann", signer.public_key)
    other = NoteSigner("PeterNeumann", Ed25519PrivateKey.generate())
    with pytest.raises(InvalidNote, match="no signature"):
        open_note(GO_NOTE, "PeterNeumann", other.public_key)
    with pytest.raises(InvalidNote):
        open_note(GO_TEXT, "PeterNeumann", signer.public_key)  # no signature at all


def test_a_witness_cosignature_beside_the_log_signature_is_ignored():
    log, witness = NoteSigner("passerelle/intake", Ed25519PrivateKey.generate()), \
        NoteSigner("witness.example/w1", Ed25519PrivateKey.generate())
    text = Checkpoint("passerelle/intake", 3, bytes(32)).text()
    note = log.sign(text)
    cosigned = note + witness.sign(text).split("\n\n", 1)[1]
    assert open_note(cosigned, "passerelle/intake", log.public_key) == text
    assert open_note(cosigned, "witness.example/w1", witness.public_key) == text


def test_a_checkpoint_is_origin_size_and_root_one_per_line():
    checkpoint = Checkpoint("passerelle/funding", 1234, bytes(range(32)))
    text = checkpoint.text()
    assert text == f"passerelle/funding\n1234\n{base64.b64encode(bytes(range(32))).decode()}\n"
    assert Checkpoint.parse(text) == checkpoint
    for bad in ("passerelle/funding\nx\nAAAA\n", "passerelle/funding\n12\n", "o\n1\nAAAA\n"):
        with pytest.raises((InvalidNote, ValueError)):
            Checkpoint.parse(bad)
