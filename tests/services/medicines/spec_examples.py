"""The JSON examples of the CDS Hooks specification (../shared/data/cds-hooks, Apache-2.0),
read from its Markdown, and a checker of responses against the spec's card rules."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import shared_data

_BLOCK = re.compile(r"```json\n(.*?)```", re.S)


def blocks(*path: str) -> list[Any]:
    """Every JSON block of a spec page that parses (``//`` comments removed)."""
    text = Path(shared_data("cds-hooks", "markdown", "docs", *path)).read_text()
    out = []
    for raw in _BLOCK.findall(text):
        cleaned = re.sub(r"//[^\n\"]*\n", "\n", re.sub(r"^POST .*\n", "", raw, flags=re.M))
        try:
            out.append(json.loads(cleaned))
        except json.JSONDecodeError:
            continue
    return out


def hook_request(example: dict[str, Any], hook: str) -> dict[str, Any]:
    """A spec context example made into a full hook request (it shows only ``context``)."""
    return {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "fhirServer": "https://fhir.example.invalid", **example}


def assert_valid_response(body: dict[str, Any]) -> None:
    """The response rules of https://cds-hooks.hl7.org/2.0/#cds-service-response."""
    assert isinstance(body["cards"], list)
    for card in body["cards"]:
        assert card["summary"] and len(card["summary"]) < 140
        assert card["indicator"] in ("info", "warning", "critical")
        assert card["source"]["label"]
        if "suggestions" in card:
            assert card["selectionBehavior"] in ("at-most-one", "any")
            for s in card["suggestions"]:
                assert s["label"]
                for action in s.get("actions", ()):
                    assert action["type"] in ("create", "update", "delete") and action["description"]
        for reason in card.get("overrideReasons", ()):
            assert reason["display"] and reason["code"]
