"""Places the programme speaks of, shared by the services that must agree on them.

Services never import each other, so the codes several of them check live here.
These are reference lists of standard codes, not programme rules: which countries
a dossier may come from is a versioned rule (funding's ProgrammeRulesPublished,
intake's default rules until then), never this module.
"""

from __future__ import annotations

import re

# ISO 3166-2:FR codes of the regions where promoters live and support structures work:
# the 13 metropolitan regions and the 5 overseas regions.
FRENCH_REGIONS: tuple[str, ...] = (
    "FR-ARA", "FR-BFC", "FR-BRE", "FR-CVL", "FR-COR", "FR-GES", "FR-HDF", "FR-IDF", "FR-NOR", "FR-NAQ",
    "FR-OCC", "FR-PDL", "FR-PAC", "FR-971", "FR-972", "FR-973", "FR-974", "FR-976",
)

# ISO 3166-1 alpha-2 codes of the 28 countries the French programmes covered (docs/programme.md):
# the reference list for seeds, demos and tests; the rule in force may differ.
PROGRAMME_COUNTRIES: tuple[str, ...] = (
    "DZ", "BJ", "BF", "BI", "CV", "CM", "KM", "CG", "CD", "CI", "GA", "GN", "HT", "MG",
    "ML", "MA", "MR", "NE", "NG", "CF", "RW", "SN", "SO", "SR", "TD", "TG", "TN", "VN",
)

COUNTRY_PATTERN = r"^[A-Z]{2}$"
_COUNTRY = re.compile(COUNTRY_PATTERN)


def is_country_code(value: object) -> bool:
    """True for a string shaped like an ISO 3166-1 alpha-2 code ("ML", "SN")."""
    return isinstance(value, str) and _COUNTRY.fullmatch(value) is not None
