"""FHIR resources of the shared sites: Organization, Location, Practitioner, PractitionerRole.

Site identities (names, ODS codes, CQC ids) are synthetic values in the real formats:
GP practice "Y9nnnn", NHS trusts "RZZ" (hospital) and "RXZ" (ambulance) with "RZZnn" site codes,
community pharmacy "FZnnn", care homes and home-care agencies "VZnnn"/"VYnnn" plus a CQC
location id "1-" and ten digits.
"""

from __future__ import annotations

from collections.abc import Iterator
from random import Random
from typing import Any

from carerecord.demo import codes, identifiers, names
from carerecord.demo.organisations import (
    EMERGENCY_DEPARTMENT,
    HOSPITAL_PHARMACY,
    HOSPITAL_PHARMACY_LOCATION,
    HOSPITAL_TRUST,
    PRACTICE_NAMES,
    WARDS,
    Site,
    Staff,
    site_number,
    sites_for,
    ward_location,
)

TRUST_CODE = "RZZ"
AMBULANCE_CODE = "RXZ"


def ref(resource_type: str, rid: str, display: str | None = None) -> dict[str, str]:
    """A relative Reference "Type/id"."""
    out = {"reference": f"{resource_type}/{rid}"}
    if display:
        out["display"] = display
    return out


def copy_address(address: dict[str, Any]) -> dict[str, Any]:
    """A deep-enough copy of a cached address, so no two resources share its objects."""
    return dict(address, line=list(address["line"]))


def _organization(rid: str, name: str, ods: str, address: dict[str, Any], rng: Random,
                  kind: codes.Code = codes.ORG_PROVIDER, cqc: str | None = None,
                  part_of: str | None = None) -> dict[str, Any]:
    idents = [identifiers.identifier(identifiers.ODS_ORGANISATION, ods, "official")]
    if cqc:
        idents.append(identifiers.identifier(identifiers.CQC_LOCATION, cqc, "secondary"))
    org: dict[str, Any] = {"resourceType": "Organization", "id": rid, "identifier": idents,
                           "active": True, "type": [kind.concept()], "name": name,
                           "telecom": [names.phone(rng, False, "work")],
                           "address": [copy_address(address)]}
    if part_of:
        org["partOf"] = ref("Organization", part_of)
    return org


def _location(rid: str, name: str, kind: codes.Code, organization: str,
              address: dict[str, Any] | None = None, part_of: str | None = None,
              site_code: str | None = None) -> dict[str, Any]:
    loc: dict[str, Any] = {"resourceType": "Location", "id": rid, "status": "active", "name": name,
                           "mode": "instance", "type": [kind.concept()]}
    if site_code:
        loc["identifier"] = [identifiers.identifier(identifiers.ODS_SITE, site_code)]
    if address:
        loc["address"] = copy_address(address)
    loc["managingOrganization"] = ref("Organization", organization)
    if part_of:
        loc["partOf"] = ref("Location", part_of)
    return loc


def _people(site: Site, rng: Random, organization: str, locations: dict[str, str | None],
            organizations: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Practitioner and PractitionerRole for each staff member.

    ``locations`` maps a job key (or "*" for any) to the role's Location id; ``organizations``
    maps a job key to an Organization other than the site's own (a hospital department)."""
    for member in site.staff:
        yield _practitioner(member, rng)
        ward, _, job = member.job.rpartition(":")
        role: dict[str, Any] = {"resourceType": "PractitionerRole", "id": member.role, "active": True,
                                "practitioner": ref("Practitioner", member.practitioner),
                                "organization": ref("Organization", (organizations or {}).get(
                                    member.job, organization)),
                                "code": [codes.JOB_ROLES[job].concept()]}
        location = ward_location(ward) if ward else locations.get(job, locations.get("*"))
        if location:
            role["location"] = [ref("Location", location)]
        yield role


def _practitioner(member: Staff, rng: Random) -> dict[str, Any]:
    female = rng.random() < 0.6
    prefix = "Dr" if member.registration == "gmc" else None
    out: dict[str, Any] = {"resourceType": "Practitioner", "id": member.practitioner}
    if member.registration:
        out["identifier"] = [identifiers.registration(member.registration, member.serial)]
    out.update({"active": True,
                "name": [names.human_name(rng, female, rng.randrange(1960, 1999), prefix)],
                "telecom": [names.phone(rng, False, "work")],
                "gender": "female" if female else "male"})
    return out


def site_resources(site: Site, seed: int) -> Iterator[dict[str, Any]]:
    """Every resource of one site, in a fixed order (organisations, locations, then staff)."""
    rng = Random(f"carerecord-demo:{seed}:{site.key}:resources")
    number = site_number(site.key)
    town = site.address["city"]
    if site.key == "hospital":
        yield _organization(HOSPITAL_TRUST, f"{town} Teaching Hospitals NHS Trust", TRUST_CODE,
                            site.address, rng)
        yield _organization(HOSPITAL_PHARMACY, "Hospital Pharmacy", f"{TRUST_CODE}01", site.address,
                            rng, codes.ORG_DEPARTMENT, part_of=HOSPITAL_TRUST)
        yield _location(site.location or "", f"{town} General Infirmary", codes.LOC_HOSPITAL,
                        HOSPITAL_TRUST, site.address, site_code=f"{TRUST_CODE}01")
        yield _location(EMERGENCY_DEPARTMENT, "Emergency Department", codes.LOC_EMERGENCY,
                        HOSPITAL_TRUST, part_of=site.location)
        for ward, name in WARDS:
            yield _location(ward_location(ward), name, codes.LOC_WARD, HOSPITAL_TRUST,
                            part_of=site.location)
        yield _location(HOSPITAL_PHARMACY_LOCATION, "Hospital Pharmacy", codes.LOC_PHARMACY,
                        HOSPITAL_PHARMACY, part_of=site.location)
        yield from _people(site, rng, HOSPITAL_TRUST, {"pharmacist": HOSPITAL_PHARMACY_LOCATION},
                           {"pharmacist": HOSPITAL_PHARMACY})
    elif site.key == "ambulance":
        yield _organization(site.organization, "Pennine Ambulance Service NHS Trust", AMBULANCE_CODE,
                            site.address, rng)
        yield from _people(site, rng, site.organization, {})
    else:
        yield from _local_site(site, rng, number)


def _local_site(site: Site, rng: Random, number: int) -> Iterator[dict[str, Any]]:
    kind = site.key.rstrip("0123456789")
    index = int(site.key[len(kind):])
    cqc = f"1-{1_000_000_000 + number * 7_919_311 % 9_000_000_000:010d}"
    if kind == "gp":
        name = PRACTICE_NAMES[index % len(PRACTICE_NAMES)]
        yield _organization(site.organization, name, f"Y9{index:04d}", site.address, rng)
        yield _location(site.location or "", f"{name} - main surgery", codes.LOC_PRIMARY_CARE,
                        site.organization, site.address)
    elif kind == "pharmacy":
        name = f"{site.address['city']} Community Pharmacy {index + 1}"
        yield _organization(site.organization, name, f"FZ{index:03d}", site.address, rng)
        yield _location(site.location or "", name, codes.LOC_PHARMACY, site.organization,
                        site.address)
    elif kind == "homecare":
        name = f"{site.address['city']} Home Care Services {index + 1}"
        yield _organization(site.organization, name, f"VY{index:03d}", site.address, rng, cqc=cqc)
    else:
        name = site.address["line"][0]
        yield _organization(site.organization, name, f"VZ{index:03d}", site.address, rng, cqc=cqc)
        yield _location(site.location or "", name, codes.LOC_CARE_HOME, site.organization,
                        site.address)
    yield from _people(site, rng, site.organization, {"*": site.location})


def shared_resources(people: int, seed: int) -> Iterator[dict[str, Any]]:
    """All shared resources that ``people`` people can refer to, site by site."""
    for site in sites_for(people, seed):
        yield from site_resources(site, seed)

