"""The console's message catalogue: the French sentences of the code and templates, and their English.

    python -m console.catalogue update   adds the new sentences to messages.po (untranslated), drops the gone ones
    python -m console.catalogue check    lists the sentences without an English translation (exit 1 if any)
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

HERE = Path(__file__).resolve().parent
PO = HERE / "locale" / "en" / "LC_MESSAGES" / "messages.po"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")]
OPTIONS = {"templates/**.html": {"trim_blocks": "true", "lstrip_blocks": "true"}}


def sentences() -> list[str]:
    """Every message id of the console, in the order it is first met."""
    found: dict[str, None] = {}
    for _file, _line, message, _comments, _context in extract_from_dir(
            HERE, METHODS, keywords={"_": None, "N_": None}, options_map=OPTIONS):
        text = message[0] if isinstance(message, tuple) else message
        if text:
            found.setdefault(text, None)
    return list(found)


def load() -> Catalog:
    with open(PO, "rb") as po:
        return read_po(po, locale="en")


def update() -> None:
    old = load()
    new = Catalog(locale="en", project="Passerelle console", charset="utf-8")
    for text in sentences():
        known = old.get(text)
        new.add(text, known.string if known else "")
    with open(PO, "wb") as po:
        write_po(po, new, width=120, omit_header=False, sort_output=False)


def untranslated() -> list[str]:
    catalog = load()
    return [t for t in sentences() if not (catalog.get(t) and catalog.get(t).string)]


if __name__ == "__main__":
    if sys.argv[1:] == ["update"]:
        update()
    missing = untranslated()
    for text in missing:
        print(f"untranslated: {text}")
    sys.exit(1 if missing and sys.argv[1:] == ["check"] else 0)
