"""A medicines terminology shaped like the NHS Dictionary of Medicines and Devices (dm+d,
https://www.nhsbsa.nhs.uk/pharmacies-gp-practices-and-appliance-contractors/dictionary-medicines-and-devices-dmd).

dm+d's levels, each identified by a SNOMED CT (UK Drug Extension) code:

- VTM, virtual therapeutic moiety: the substance(s) a prescriber means (``Amoxicillin``);
- VMP, virtual medicinal product: moiety, strength and form (``Amoxicillin 500mg capsules``),
  with its ingredient substances (VPI: substance, strength numerator/denominator), dose forms
  and routes;
- AMP, actual medicinal product: a supplier's VMP (``Amoxil 500mg capsules``).

A ``Terminology`` is filled by ``dmd_loader.load_dmd`` from an NHSBSA release; it is empty when
none is loaded, and the resolver then falls back to the knowledge base's VTM and substance
codes and to names."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Strength:
    """``numerator`` ``numerator_unit`` per ``denominator`` ``denominator_unit`` (the
    denominator is absent for a discrete form: the strength is per tablet, capsule...)."""

    numerator: float
    numerator_unit: str
    denominator: float | None = None
    denominator_unit: str | None = None


@dataclass(frozen=True, slots=True)
class ProductIngredient:
    """A VMP ingredient: the substance in the product (often a salt) and, when the strength
    is stated as its base, the base substance (dm+d BS_SUBID)."""

    substance: str
    base_substance: str | None = None
    strength: Strength | None = None


@dataclass(frozen=True, slots=True)
class Vtm:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Vmp:
    id: str
    name: str
    vtm: str | None
    ingredients: tuple[ProductIngredient, ...] = ()
    forms: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    unit_dose_unit: str | None = None


@dataclass(frozen=True, slots=True)
class Amp:
    id: str
    name: str
    vmp: str


@dataclass(slots=True)
class Terminology:
    """dm+d concepts by code, and the lookup tables (units, forms, routes) by code."""

    release: str = ""
    vtms: dict[str, Vtm] = field(default_factory=dict)
    vmps: dict[str, Vmp] = field(default_factory=dict)
    amps: dict[str, Amp] = field(default_factory=dict)
    substances: dict[str, str] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    forms: dict[str, str] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)

    def product(self, code: str) -> tuple[str, Vmp | None, Vtm | None] | None:
        """What ``code`` is: (level, its VMP if any, its VTM if any) for an AMP, VMP or VTM
        code, else None. An AMP resolves through its VMP, a VMP to its VTM."""
        if (amp := self.amps.get(code)) is not None:
            vmp = self.vmps.get(amp.vmp)
            return "AMP", vmp, self.vtms.get(vmp.vtm) if vmp and vmp.vtm else None
        if (vmp := self.vmps.get(code)) is not None:
            return "VMP", vmp, self.vtms.get(vmp.vtm) if vmp.vtm else None
        if (vtm := self.vtms.get(code)) is not None:
            return "VTM", None, vtm
        return None

    def unit_name(self, code: str | None) -> str | None:
        return self.units.get(code) if code else None

    def __len__(self) -> int:
        return len(self.vtms) + len(self.vmps) + len(self.amps)
