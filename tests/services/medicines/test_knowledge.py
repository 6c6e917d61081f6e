"""The bundled knowledge base: versioned data that says it is a starter, cites a source for
every rule, names only ingredients and classes it defines, and whose dm+d codes match a real
release (the dm+d test sample, used for tests only)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from carerecord.services.medicines.knowledge import slug
from tests.conftest import shared_data
from tests.services.medicines.helpers import KB

DATA = resources.files("carerecord.services.medicines").joinpath("data")


def _doc(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads(DATA.joinpath(name).read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["medicines.json", "interactions.json", "allergies.json", "doses.json"])
def test_every_data_file_is_versioned_and_says_to_load_a_licensed_knowledge_base(name: str) -> None:
    doc = _doc(name)
    assert doc["version"]
    assert "licensed" in doc["about"]["statement"]


def test_about_300_medicines_are_bundled() -> None:
    assert 280 <= len(KB.medicines) <= 450


def test_every_rule_cites_a_source() -> None:
    for rule in _doc("interactions.json")["interactions"] + _doc("allergies.json")["groups"]:
        assert rule["source"]["title"] and rule["source"]["publisher"], rule
    for lim in _doc("doses.json")["limits"] + _doc("doses.json")["renal"]:
        assert lim["source"]["title"], lim


def test_rules_name_only_known_ingredients_and_classes() -> None:
    doses = _doc("doses.json")
    sides = [r[s] for r in _doc("interactions.json")["interactions"] for s in ("a", "b")] + doses["renal"]
    for side in sides:
        assert all(KB.ingredient(slug(i)) for i in side.get("ingredients", ())), side
        assert all(KB.drug_class(c) for c in side.get("classes", ())), side
    assert all(KB.ingredient(slug(lim["ingredient"])) for lim in doses["limits"])
    for group in _doc("allergies.json")["groups"]:
        assert all(KB.drug_class(c) for c in group["classes"])


def test_bundled_codes_are_those_of_the_dm_d_release() -> None:
    from carerecord.services.medicines.dmd_loader import load_dmd

    term = load_dmd(shared_data("dmd-sample", "dmd", "2"))
    for med in KB.medicines:
        if med.vtm:
            assert term.vtms[med.vtm].name == med.name
    for ing_id in {i for m in KB.medicines for i in m.ingredients}:
        ing = KB.ingredient(ing_id)
        assert ing is not None
        for code in ing.substance_codes:
            assert term.substances[code].startswith(ing.name)
