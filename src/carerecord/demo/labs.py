"""Blood and urine tests: a DiagnosticReport from the hospital trust's laboratory grouping its
result Observations (``result`` references), as a GP record receives pathology.

The sample is taken at the review (by the nurse or healthcare assistant) and reported one to
three days later; results carry the review's Encounter, the laboratory as performer and the
UK units and reference ranges an English lab reports (eGFR above 90 as ">90", as labs do).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from carerecord.demo import codes, organisations
from carerecord.demo.clinical import observation, quantity
from carerecord.demo.codes import Code
from carerecord.demo.record import Record, ref, stamp

LAB = f"Organization/{organisations.HOSPITAL_TRUST}"
# test key -> report text
PANELS = {"hba1c": "HbA1c", "renal": "Renal function", "lipids": "Lipids", "acr": "Urine ACR"}


def report(rec: Record, day: date, taken: str, encounter: str, tests: list[str]) -> dict[str, Any]:
    """A final lab report of ``tests`` (keys of :data:`PANELS`) sampled on ``day`` at ``taken``
    (a dateTime on that day).

    ``day`` must be at least three days before today, so the report is issued in the past."""
    p = rec.person
    health = rec.health
    assert health is not None
    issued = stamp(day + timedelta(days=p.rng.randint(1, 3)), 8 * 60 + p.rng.randrange(0, 540))
    results: list[dict[str, Any]] = []

    def result(code: tuple[Code, ...], value: float, unit: str, low: float | None = None,
               high: float | None = None, comparator: str | None = None) -> None:
        obs = observation(rec, code, taken, encounter, LAB, codes.OBS_CAT_LAB)
        obs["issued"] = issued
        obs["valueQuantity"] = quantity(value, unit)
        if comparator:
            obs["valueQuantity"] = {"value": value, "comparator": comparator,
                                    **{k: v for k, v in obs["valueQuantity"].items() if k != "value"}}
        if low is not None or high is not None:
            obs["referenceRange"] = [{**({"low": quantity(low, unit)} if low is not None else {}),
                                      **({"high": quantity(high, unit)} if high is not None else {})}]
        results.append(rec.add(obs))

    rng = p.rng
    on_statin = any(key.startswith("atorvastatin") for key, _ in rec.medicines)
    for test in tests:
        if test == "hba1c":
            result(codes.OBS_HBA1C, round(min(max(health.hba1c + rng.gauss(0, 4), 38), 110)), "mmol/mol",
                   high=48)
        elif test == "renal":
            egfr = health.egfr_at(p.today, day) + rng.gauss(0, 3)
            creatinine = (72 if p.female else 88) * (90 / max(egfr, 10)) ** 0.9 + rng.gauss(0, 4)
            result(codes.OBS_CREATININE, round(creatinine), "umol/L", 45 if p.female else 59, 84 if p.female else 104)
            if egfr > 90:
                result(codes.OBS_EGFR, 90, "mL/min/{1.73_m2}", comparator=">")
            else:
                result(codes.OBS_EGFR, round(max(egfr, 8)), "mL/min/{1.73_m2}", low=90)
        elif test == "lipids":
            total = health.cholesterol * (0.75 if on_statin else 1.0) + rng.gauss(0, 0.3)
            result(codes.OBS_CHOLESTEROL, round(max(total, 2.5), 1), "mmol/L", high=5.0)
            result(codes.OBS_HDL, round(max(health.hdl + rng.gauss(0, 0.1), 0.6), 2), "mmol/L", low=1.0)
        elif test == "acr":
            result(codes.OBS_URINE_ACR, round(max(health.acr * rng.lognormvariate(0, 0.3), 0.2), 1), "mg/mmol",
                   high=3.0)
    text = ", ".join(PANELS[t] for t in tests)
    return rec.add({"resourceType": "DiagnosticReport", "id": rec.new_id("report"), "status": "final",
                    "category": [codes.REPORT_CAT_LAB.concept()], "code": codes.REPORT_LAB.concept(text),
                    "subject": rec.subject(), "encounter": ref("Encounter", encounter),
                    "effectiveDateTime": taken, "issued": issued, "performer": [{"reference": LAB}],
                    "result": [ref("Observation", r["id"]) for r in results]})
