"""Identifier systems and synthetic identifier values for the demo community.

NHS numbers come from the 999 range that NHS England keeps for test and synthetic patients and
carry a valid Modulus 11 check digit (https://www.datadictionary.nhs.uk/attributes/nhs_number.html).
Professional registration systems are the ones UK Core and the EPS API use
(``uk-core/examples/UKCore-Practitioner-*.xml``; HCPC from the EPS API source). ODS, CQC and
registration values are synthetic values in the real formats; a clash with a real code is accidental.
"""

from __future__ import annotations

from typing import Any

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_ORGANISATION = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_SITE = "https://fhir.nhs.uk/Id/ods-site-code"
# CQC has no published FHIR identifier system; this is its public location URL space, which is
# where a CQC location id ("1-" and ten digits) resolves (https://www.cqc.org.uk/location/1-...).
CQC_LOCATION = "https://cqc.org.uk/location-id"
GMC = "https://fhir.hl7.org.uk/Id/gmc-number"  # 7 digits (EPS examples: "6095103")
NMC = "https://fhir.hl7.org.uk/Id/nmc-number"  # PIN: 2 digits, letter, 4 digits, letter
GPHC = "https://fhir.hl7.org.uk/Id/gphc-number"  # 7 digits (UKC PharmacistJimmyChuck: "2298676")
HCPC = "https://fhir.hl7.org.uk/Id/hcpc-number"  # profession prefix + 6 digits ("PA123456")

NHS_TEST_PREFIX = 999
_BLOCKS = 100_000  # five free digits after the 999 prefix
_BLOCK_STRIDE = 38_923  # coprime with 100,000, so block -> position is a bijection
MAX_PEOPLE = _BLOCKS * 9  # each block of ten candidate numbers holds at least nine valid ones
_NMC_LETTERS = "ABCDEFGHJKLMNPRSTUWXY"


def nhs_check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit of nine digits, or None when the number cannot be issued (10)."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_number(index: int, seed: int) -> str:
    """A valid 999-range NHS number for person ``index``, unique among indices for one seed.

    Person ``index`` owns slot ``index % 9`` of block ``index // 9``; blocks are spread over the
    range by a seed-dependent bijection. Within a block the last free digit runs 0-9 and at most
    one of those ten candidates has the unusable check value 10, so every slot exists. The number
    depends only on (index, seed), never on how many people are generated.
    """
    if not 0 <= index < MAX_PEOPLE:
        raise ValueError(f"person index {index} outside the 999 test range capacity ({MAX_PEOPLE})")
    block = (index // 9 * _BLOCK_STRIDE + seed * 7_919) % _BLOCKS
    stem = f"{NHS_TEST_PREFIX}{block:05d}"
    partial = sum(int(d) * w for d, w in zip(stem, range(10, 2, -1), strict=True))
    wanted = index % 9
    for last in range(10):  # the last free digit has weight 2
        check = (11 - (partial + 2 * last) % 11) % 11
        if check == 10:
            continue
        if wanted == 0:
            return f"{stem}{last}{check}"
        wanted -= 1
    raise AssertionError("unreachable: a block always holds nine valid numbers")


def identifier(system: str, value: str, use: str | None = None) -> dict[str, Any]:
    """A FHIR Identifier."""
    out: dict[str, Any] = {"system": system, "value": value}
    if use:
        out["use"] = use
    return out


def registration(kind: str, serial: int) -> dict[str, Any]:
    """A professional registration Identifier of ``kind`` (gmc, nmc, gphc, hcpc) for a staff serial."""
    if kind == "gmc":
        return identifier(GMC, f"{7_100_000 + serial * 37 % 900_000:07d}", "official")
    if kind == "gphc":
        return identifier(GPHC, f"{2_200_000 + serial * 53 % 700_000:07d}", "official")
    if kind == "hcpc":
        return identifier(HCPC, f"PA{100_000 + serial * 71 % 900_000:06d}", "official")
    if kind == "nmc":
        n = serial * 7_907
        letter_a = _NMC_LETTERS[n % len(_NMC_LETTERS)]
        letter_b = "AEIOUY"[n // 7 % 6]
        return identifier(NMC, f"{10 + serial % 90:02d}{letter_a}{1000 + n % 9000:04d}{letter_b}",
                          "official")
    raise ValueError(f"unknown registration kind {kind!r}")
