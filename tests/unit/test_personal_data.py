"""Person records and the keyed hashes that find possible duplicates, without I/O."""

from __future__ import annotations

import os
import uuid

import pytest

from services.intake.domain import DuplicateKind
from services.intake.personal_data import (
    KeyErased,
    PersonalDataVault,
    name_forms,
    phone_form,
)


class Keys:
    """The store's side tables, in memory: data keys and identifiers' hashes per person."""

    def __init__(self) -> None:
        self.data_keys: dict[str, bytes] = {}
        self.identifiers: list[tuple[str, str, str]] = []

    def find_data_key(self, key_id: str) -> bytes | None:
        return self.data_keys.get(key_id)

    def delete_data_key(self, key_id: str) -> None:
        self.data_keys.pop(key_id, None)

    def find_identifiers(self, digests: list[str]) -> list[tuple[str, str]]:
        return sorted({(person, kind) for person, kind, digest in self.identifiers if digest in digests})

    def register(self, vault: PersonalDataVault, promoter: dict) -> str:
        person = str(uuid.uuid4())
        self.identifiers += [(person, kind, digest) for kind, digest in vault.identifiers(promoter)]
        return person


@pytest.fixture
def vault() -> PersonalDataVault:
    return PersonalDataVault(Keys(), os.urandom(32))


def promoter(given: str, family: str, birth: str = "1990-05-01", phone: str = "+33 6 12 34 56 78", **more) -> dict:
    return {"given_name": given, "family_name": family, "birth_date": birth, "phone": phone,
            "residence_status": "regular", **more}


def test_two_people_with_arabic_names_born_the_same_day_are_not_one_person(vault):
    """The old normalisation deleted every non-Latin letter: both names hashed to the same id."""
    first = promoter("محمد", "بن علي", phone="+33 6 11 11 11 11")
    second = promoter("أحمد", "الهاشمي", phone="+33 6 22 22 22 22")
    assert vault.identifiers(first) != vault.identifiers(second)
    person = vault.keys.register(vault, first)
    assert vault.possible_duplicates(vault.identifiers(second)) == {}
    assert vault.possible_duplicates(vault.identifiers(first)) == {
        person: [DuplicateKind.birth_date, DuplicateKind.name, DuplicateKind.phone]}


def test_a_name_is_compared_in_every_script_and_in_latin():
    assert name_forms("محمد", "") == name_forms("مُحَمَّد", ""), "optional Arabic vowel marks do not count"
    assert name_forms("Nguyễn Văn", "An") & name_forms("an", "NGUYEN van"), "transliterated, any order, any case"
    assert name_forms("Արամ", "Պետրոսյան") & name_forms("Aram", "Petrosyan"), "Armenian meets its transliteration"
    assert name_forms("Jean-Paul", "Mbarga") == name_forms("jean paul", "MBARGA")
    assert "محمد" in " ".join(name_forms("محمد", "")), "the script is kept, not deleted"


def test_variants_of_one_person_are_flagged_with_what_matched(vault):
    person = vault.keys.register(vault, promoter("Nguyễn Văn", "An", phone="06 12 34 56 78"))
    variant = promoter("Van An", "NGUYEN", phone="+33612345678")
    assert vault.possible_duplicates(vault.identifiers(variant)) == {
        person: [DuplicateKind.birth_date, DuplicateKind.name, DuplicateKind.phone]}
    document = vault.keys.register(vault, promoter("Aram", "Petrosyan", "1980-01-01", "+374 10 123456",
                                                   document_number="AN 0123456"))
    # Another birth date and phone: the document's number (written otherwise) and the name still match.
    other = promoter("Արամ", "Պետրոսյան", "1981-02-02", "+374 99 000000", document_number="an0123456")
    assert vault.possible_duplicates(vault.identifiers(other)) == {document: [DuplicateKind.document,
                                                                              DuplicateKind.name]}


def test_a_name_or_a_birth_date_alone_is_not_a_possible_duplicate(vault):
    vault.keys.register(vault, promoter("Awa", "Diop", "1990-01-01", "+33 6 00 00 00 01"))
    assert vault.possible_duplicates(vault.identifiers(promoter("Awa", "Diop", "1991-01-01", "+33 6 00 00 00 02"))) == {}
    assert vault.possible_duplicates(vault.identifiers(promoter("Fatou", "Sarr", "1990-01-01", "+33 6 00 00 00 03"))) == {}


def test_phones_are_compared_in_e164_and_else_by_their_digits():
    assert phone_form("06 12 34 56 78") == phone_form("+33 6 12 34 56 78") == phone_form("0033612345678") \
        == "+33612345678"
    assert phone_form("+221 77 123 45 67") == "+221771234567"
    assert phone_form("(12)") == "12", "a number that does not parse is compared by its digits"


def test_the_hashes_are_keyed_and_hold_no_identifier():
    one, two = PersonalDataVault(Keys(), os.urandom(32)), PersonalDataVault(Keys(), os.urandom(32))
    awa = promoter("Awa", "Diop")
    assert {d for _, d in one.identifiers(awa)}.isdisjoint({d for _, d in two.identifiers(awa)})
    assert not any("awa" in d or "1990" in d or "612345678" in d for _, d in one.identifiers(awa))


def test_data_sealed_under_a_key_that_is_gone_or_replaced_reads_as_erased(vault):
    person = uuid.uuid4()
    sealed = vault.seal(person, {"given_name": "Awa"}, new_person=True)
    vault.keys.data_keys[sealed.new_key[0]] = sealed.new_key[1]
    assert vault.open(person, sealed.ciphertext) == {"given_name": "Awa"}
    vault.forget(person)
    with pytest.raises(KeyErased):
        vault.open(person, sealed.ciphertext)
    # As when an id was derived from the identity: the person came back, a new key under the same id.
    replaced = vault.seal(person, {"given_name": "Awa"}, new_person=True)
    vault.keys.data_keys[replaced.new_key[0]] = replaced.new_key[1]
    with pytest.raises(KeyErased):
        vault.open(person, sealed.ciphertext)


def test_the_note_of_a_forgetting_is_sealed_under_a_key_that_is_not_the_persons(vault):
    person = uuid.uuid4()
    sealed = vault.seal_note(person, "request RGPD-2026-14 by post")
    assert "RGPD" not in sealed
    vault.forget(person)
    assert vault.open_note(person, sealed) == "request RGPD-2026-14 by post"
