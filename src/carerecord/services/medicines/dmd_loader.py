"""Load an NHSBSA dm+d XML release (the ``f_vtm``, ``f_vmp``, ``f_amp``, ``f_ingredient`` and
``f_lookup`` files of the weekly release, schema 2.3) into a ``Terminology``.

The release is distributed through NHS TRUD under the NHSBSA dm+d licence: carerecord does not
ship it; a deployment downloads it and points this loader at the unzipped folder.

The files are parsed incrementally with lxml, with entity resolution, DTD loading and network
access off; a file with a DOCTYPE is refused (the release has none), so no file can make the
parser read other files or the network."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from lxml import etree

from carerecord.services.medicines.terminology import Amp, ProductIngredient, Strength, Terminology, Vmp, Vtm


class ReleaseError(ValueError):
    """The folder is not a usable dm+d release."""


def _file(folder: Path, stem: str) -> Path:
    found = sorted(folder.glob(f"{stem}[0-9]*.xml"))  # f_amp2_..., not f_ampp2_...
    if not found:
        raise ReleaseError(f"no {stem}*.xml in {folder}")
    return found[-1]


def _elements(path: Path, tag: str | tuple[str, ...]) -> Iterator[etree._Element]:
    """Each ``tag`` element of ``path`` in document order, cleared after use."""
    with path.open("rb") as f:
        if b"<!DOCTYPE" in f.read(4096):
            raise ReleaseError(f"{path.name} has a DOCTYPE; dm+d release files have none")
    for _, el in etree.iterparse(str(path), events=("end",), tag=tag, resolve_entities=False,
                                 no_network=True, load_dtd=False, huge_tree=True):
        yield el
        el.clear(keep_tail=False)


def _text(el: etree._Element, child: str) -> str | None:
    value = el.findtext(child)
    return value.strip() if value else None


def _number(el: etree._Element, child: str) -> float | None:
    value = _text(el, child)
    return float(value) if value else None


def _valid(el: etree._Element) -> bool:
    return _text(el, "INVALID") != "1"


def load_lookups(folder: Path, term: Terminology) -> None:
    """Units of measure, forms and routes (code -> description)."""
    tables = {"UNIT_OF_MEASURE": term.units, "FORM": term.forms, "ROUTE": term.routes}
    path = _file(folder, "f_lookup")
    for el in _elements(path, "INFO"):
        parent = el.getparent()
        table = tables.get(parent.tag) if parent is not None else None
        if table is not None and (code := _text(el, "CD")):
            table[code] = _text(el, "DESC") or code


def _strength(el: etree._Element, units: dict[str, str]) -> Strength | None:
    num = _number(el, "STRNT_NMRTR_VAL")
    if num is None:
        return None
    num_unit = _text(el, "STRNT_NMRTR_UOMCD") or ""
    den_unit = _text(el, "STRNT_DNMTR_UOMCD")
    return Strength(num, units.get(num_unit, num_unit), _number(el, "STRNT_DNMTR_VAL"),
                    units.get(den_unit, den_unit) if den_unit else None)


def load_vmps(folder: Path, term: Terminology) -> None:
    """VMPs with their ingredients (VPI), dose forms and routes."""
    path = _file(folder, "f_vmp")
    heads: dict[str, tuple[str, str | None, str | None]] = {}
    ingredients: dict[str, list[ProductIngredient]] = defaultdict(list)
    forms: dict[str, list[str]] = defaultdict(list)
    routes: dict[str, list[str]] = defaultdict(list)
    for el in _elements(path, ("VMP", "VPI", "DFORM", "DROUTE")):
        vpid = _text(el, "VPID") or ""
        if el.tag == "VMP":
            if _valid(el):
                heads[vpid] = (_text(el, "NM") or vpid, _text(el, "VTMID"), _text(el, "UNIT_DOSE_UOMCD"))
        elif el.tag == "VPI":
            ingredients[vpid].append(ProductIngredient(_text(el, "ISID") or "", _text(el, "BS_SUBID"),
                                                       _strength(el, term.units)))
        elif el.tag == "DFORM" and (code := _text(el, "FORMCD")):
            forms[vpid].append(term.forms.get(code, code))
        elif el.tag == "DROUTE" and (code := _text(el, "ROUTECD")):
            routes[vpid].append(term.routes.get(code, code))
    for vpid, (name, vtm, unit_dose) in heads.items():
        term.vmps[vpid] = Vmp(vpid, name, vtm, tuple(ingredients[vpid]), tuple(forms[vpid]),
                              tuple(routes[vpid]), term.units.get(unit_dose, unit_dose) if unit_dose else None)


def load_dmd(folder: str | Path) -> Terminology:
    """The terminology of the release in ``folder`` (the unzipped weekly release)."""
    folder = Path(folder)
    term = Terminology(release=folder.name)
    load_lookups(folder, term)
    for el in _elements(_file(folder, "f_ingredient"), "ING"):
        if _valid(el) and (isid := _text(el, "ISID")):
            term.substances[isid] = _text(el, "NM") or isid
    for el in _elements(_file(folder, "f_vtm"), "VTM"):
        if _valid(el) and (vtmid := _text(el, "VTMID")):
            term.vtms[vtmid] = Vtm(vtmid, _text(el, "NM") or vtmid)
    load_vmps(folder, term)
    for el in _elements(_file(folder, "f_amp"), "AMP"):
        if _valid(el) and (apid := _text(el, "APID")) and (vpid := _text(el, "VPID")):
            term.amps[apid] = Amp(apid, _text(el, "NM") or apid, vpid)
    return term
