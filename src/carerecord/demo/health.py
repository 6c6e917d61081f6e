"""The person's underlying state of health: the values their measurements and results scatter
around, drawn once so a record reads as one person over the years (a weight that drifts, an
HbA1c that stays near its own level, an eGFR that falls slowly with CKD), not a fresh random
person at every visit.

Figures are plausible English primary-care values, not real data: BMI near the English mean
(about 27.5, NHS Health Survey for England 2022), about 12% current smokers (ONS 2023), eGFR
falling about 1 mL/min/1.73m2 a year after 40, HbA1c around 58 mmol/mol on treatment, and CKD
stage 3 as eGFR 30-59 (NICE NG203).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from carerecord.demo.record import Record


@dataclass(frozen=True, slots=True)
class Health:
    """Per-person baselines; ``*_at`` methods give the level on a day."""

    height: float  # cm, adult height (children's come from their age: clinical._size)
    bmi: float
    smoking: str  # key of codes.SMOKING
    hba1c: float  # mmol/mol (only meaningful with diabetes)
    egfr: float  # mL/min/1.73m2 today
    cholesterol: float  # mmol/L, total, untreated
    hdl: float  # mmol/L
    acr: float  # urine albumin:creatinine ratio, mg/mmol
    peak_flow: float  # L/min, best
    fev1: float  # L
    mmse: float  # Mini-Mental State Examination score today (dementia)

    def egfr_at(self, today: date, day: date) -> float:
        """eGFR on ``day``: higher in the past (about 1 a year, 2 with CKD)."""
        return self.egfr + (today - day).days / 365 * (2.0 if self.egfr < 60 else 1.0)

    def mmse_at(self, today: date, day: date) -> float:
        """MMSE on ``day``: dementia takes about 2 points a year."""
        return min(30.0, self.mmse + (today - day).days / 365 * 2.2)


def draw(rec: Record) -> Health:
    """Draw the person's baselines from their own random stream."""
    p = rec.person
    rng = p.rng
    chronic = set(p.chronic)
    height = (162 if p.female else 176) + rng.gauss(0, 7) - (4 if p.age >= 75 else 0)
    bmi = rng.gauss(24 if p.care_home else 27.5, 4.5) + (3 if "diabetes_t2" in chronic else 0)
    roll = rng.random()
    if p.age < 16:
        smoking = "never"
    elif "copd" in chronic:
        smoking = "current" if roll < 0.35 else "ex" if roll < 0.95 else "never"
    else:
        smoking = "current" if roll < 0.12 else "ex" if roll < 0.12 + min(0.45, p.age / 160) else "never"
    if "ckd3" in chronic:
        egfr = rng.uniform(30, 59) if rng.random() < 0.3 else rng.uniform(45, 59)
    else:
        egfr = max(60.0, min(120.0, 118 - 0.9 * max(0, p.age - 30) + rng.gauss(0, 10)))
    acr = rng.lognormvariate(0.3, 0.7) * (3 if chronic & {"diabetes_t2", "ckd3"} else 1)
    sex_flow = 1.0 if not p.female else 0.8
    peak_flow = max(150.0, (560 - 2.0 * max(0, p.age - 30)) * sex_flow + rng.gauss(0, 50))
    fev1 = max(0.6, (3.9 if not p.female else 2.9) - 0.025 * max(0, p.age - 30) + rng.gauss(0, 0.4))
    if "copd" in chronic:
        fev1 *= rng.uniform(0.4, 0.75)
    return Health(height=round(height, 1), bmi=min(max(bmi, 16.5), 48.0), smoking=smoking,
                  hba1c=min(max(rng.gauss(58, 11), 40), 100), egfr=egfr,
                  cholesterol=min(max(rng.gauss(5.3, 1.0), 3.0), 8.5),
                  hdl=min(max(rng.gauss(1.55 if p.female else 1.25, 0.3), 0.7), 2.6), acr=min(acr, 80.0),
                  peak_flow=peak_flow, fev1=fev1, mmse=rng.uniform(10, 24))
