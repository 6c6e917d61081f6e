"""The dm+d release loader, on the NHSBSA test extract (tests only: TRUD licence), and
matching at every dm+d level: AMP -> VMP -> VTM -> ingredients."""

from __future__ import annotations

from pathlib import Path

import pytest

from carerecord.services.medicines.dmd_loader import ReleaseError, load_dmd
from carerecord.services.medicines.resolve import Resolver
from carerecord.services.medicines.terminology import Terminology
from tests.conftest import shared_data
from tests.services.medicines.helpers import KB, coded


@pytest.fixture(scope="module")
def term() -> Terminology:
    return load_dmd(shared_data("dmd-sample", "dmd", "1"))


def test_the_release_loads_vtms_vmps_amps_and_lookups(term: Terminology) -> None:
    assert len(term.vtms) > 2000 and len(term.vmps) == 7 and term.amps
    assert term.units["258684004"] == "mg"
    vmp = term.vmps["35894711000001106"]
    assert vmp.name == "Adenosine 6mg/2ml solution for injection vials"
    assert vmp.vtm == "108502004" and vmp.routes == ("Intravenous",) and vmp.unit_dose_unit == "vial"
    [ing] = vmp.ingredients
    assert ing.strength is not None and (ing.strength.numerator, ing.strength.denominator_unit) == (3.0, "ml")


def test_an_amp_resolves_through_its_vmp_and_vtm(term: Terminology) -> None:
    level, vmp, vtm = term.product("4744411000001104")  # type: ignore[misc]
    assert level == "AMP" and vmp is not None and vmp.id == "35894711000001106" and vtm is not None
    assert vtm.name == "Adenosine"


def test_a_diclofenac_gel_amp_resolves_to_diclofenac_and_the_nsaids(term: Terminology) -> None:
    amp = next(a for a in term.amps.values() if a.vmp == "22480211000001104")
    found = Resolver(KB, term).concept(coded(amp.id, amp.name))
    assert found.ingredients == {"diclofenac"} and "nsaids" in found.classes
    assert found.basis.startswith(f"dm+d AMP {amp.id}")


def test_a_product_whose_ingredient_is_unknown_is_unresolved_by_name(term: Terminology) -> None:
    found = Resolver(KB, term).concept({"coding": [{"system": "http://snomed.info/sct", "code": "4744411000001104"}]})
    assert not found.checked
    assert found.display == "Adenocor 6mg/2ml solution for injection vials"


def test_a_second_release_loads_too() -> None:
    assert load_dmd(shared_data("dmd-sample", "dmd", "2")).vtms


def test_a_file_with_a_doctype_is_refused(tmp_path: Path) -> None:
    for name in ("f_lookup2_1.xml", "f_ingredient2_1.xml", "f_vmp2_1.xml", "f_amp2_1.xml"):
        (tmp_path / name).write_text("<X/>")
    (tmp_path / "f_lookup2_1.xml").write_text('<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><LOOKUP>&e;</LOOKUP>')
    with pytest.raises(ReleaseError, match="DOCTYPE"):
        load_dmd(tmp_path)


def test_a_folder_without_a_release_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError):
        load_dmd(tmp_path)
