"""HTTP adapter of the medicines workflows (``carerecord.services.medicines``) as FHIR
operations (http://hl7.org/fhir/R4/operations.html). Each POST takes a Parameters resource (or
no body) and answers a Parameters resource: ``status`` (what happened, e.g. ``signed`` or
``blocked``), one ``finding`` per safety finding (key, kind, severity, blocking, summary,
detail, advice, source, evidence) and one ``resource`` per resource written. A step that
critical findings block answers 200 with ``status`` = ``blocked`` and writes nothing: findings
are clinical values, not HTTP errors. Bad input is an OperationOutcome (400/404/422) whose
``expression`` names the parameter (``Parameters.parameter[2].valueString``) or element.

Every operation's writes run in ONE unit of the write queue (atomic); scopes are checked by the
bearer-token middleware from ``api/needs.py`` (``OPERATION_NEEDS``). The acting person is the
token's selected PractitionerRole (staff) or fhirUser (patient, proxy); a system client may name
one with the ``actor`` parameter.

Operations (instance level):
MedicationRequest: ``$check`` ``$sign`` ``$stop`` ``$change`` ``$administer`` ``$request-repeat``
``$issue`` ``$dispense`` (POST), ``$prescription`` (GET);
Task: ``$verify`` ``$query`` ``$reject`` (pharmacy) ``$approve-repeat`` ``$reject-repeat`` (POST);
Patient: ``$administration-chart?date=YYYY-MM-DD`` (GET)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from carerecord.access.principal import Kind
from carerecord.api import guarded
from carerecord.api.auth import principal
from carerecord.api.cds_hooks import service
from carerecord.api.http import fhir_response, read_body, response_format
from carerecord.errors import FhirError, Invalid, Issue, NotFound
from carerecord.services.medicines import administration, dispensing, ordering, pharmacy, repeats
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.findings import Finding
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.outcome import Outcome
from carerecord.services.medicines.prescription import prescription_bundle
from carerecord.services.medicines.records import Records
from carerecord.services.medicines.resolve import Resolver
from carerecord.store.repository import Unit

Job = Callable[[Records, "Params", str | None, datetime], Outcome]
"""One operation's work: records of one unit, its parameters, the actor and the time -> Outcome."""
_PREFIX = "http://carerecord.org/fhir/OperationDefinition/"


class Params:
    """The parameters of an operation's Parameters body, with errors located precisely."""

    def __init__(self, body: dict[str, Any] | None) -> None:
        if body is not None and body.get("resourceType") != "Parameters":
            raise Invalid("The body must be a Parameters resource", "resourceType")
        raw = (body or {}).get("parameter", [])
        self.items = [(n, p) for n, p in enumerate(raw if isinstance(raw, list) else []) if isinstance(p, dict)]

    def _find(self, name: str) -> tuple[int, dict[str, Any]] | None:
        return next(((n, p) for n, p in self.items if p.get("name") == name), None)

    def where(self, name: str, element: str = "") -> str:
        """The FHIRPath of parameter ``name`` (its value element, if given) in the body."""
        found = self._find(name)
        if found is None:
            return f"Parameters.parameter.where(name='{name}')"
        return f"Parameters.parameter[{found[0]}]" + (f".{element}" if element else "")

    def _value(self, name: str, element: str, kind: type, required: bool) -> Any:
        found = self._find(name)
        if found is None:
            if required:
                raise Invalid(f"The parameter {name!r} is required", self.where(name))
            return None
        value = found[1].get(element)
        if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
            raise Invalid(f"The parameter {name!r} needs a {element}", self.where(name, element))
        return value

    def string(self, name: str, required: bool = False) -> str:
        return str(self._value(name, "valueString", str, required) or "")

    def code(self, name: str, required: bool = False) -> str:
        return str(self._value(name, "valueCode", str, required) or "")

    def coding(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._value(name, "valueCoding", dict, False)
        return found

    def reference(self, name: str) -> str | None:
        ref = self._value(name, "valueReference", dict, False)
        if ref is None:
            return None
        if not isinstance(ref.get("reference"), str) or "/" not in ref["reference"]:
            raise Invalid(f"The parameter {name!r} needs a relative reference (Type/id)",
                          self.where(name, "valueReference.reference"))
        return str(ref["reference"])

    def instant(self, name: str) -> datetime | None:
        value = self._value(name, "valueDateTime", str, False)
        if value is None:
            return None
        try:
            found = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            found = None
        if found is None or found.tzinfo is None:
            raise Invalid(f"{name!r} must be a dateTime with a time zone", self.where(name, "valueDateTime"))
        return found

    def resource(self, name: str) -> dict[str, Any]:
        found = self._find(name)
        if found is None or not isinstance(found[1].get("resource"), dict):
            raise Invalid(f"The parameter {name!r} needs a resource", self.where(name, "resource"))
        return dict(found[1]["resource"])

    def overrides(self) -> dict[str, Override]:
        """``override`` parameters: parts ``key`` (valueString), ``reason`` (valueCoding),
        ``comment`` (valueString)."""
        out: dict[str, Override] = {}
        for n, p in self.items:
            if p.get("name") != "override":
                continue
            parts = {q.get("name"): q for q in p.get("part", []) if isinstance(q, dict)}
            key = (parts.get("key") or {}).get("valueString")
            if not isinstance(key, str) or not key:
                raise Invalid("An override needs a 'key' part (valueString): the finding's key",
                              f"Parameters.parameter[{n}].part")
            reason = (parts.get("reason") or {}).get("valueCoding")
            comment = (parts.get("comment") or {}).get("valueString") or ""
            out[key] = Override(reason if isinstance(reason, dict) else None, str(comment))
        return out

    def locate(self, err: FhirError) -> FhirError:
        """``err`` with issues that name a bare parameter (as the services do) located in the body."""
        names = {str(p.get("name")) for _, p in self.items} | {"reason", "question", "status", "scheduled",
                                                               "patientIdentifier"}
        moved = [Issue(i.severity, i.code, i.diagnostics,
                       tuple(self.where(e) if e in names else e for e in i.expression)) for i in err.issues]
        err.issues = moved
        return err


def _actor(request: Request, params: Params) -> str | None:
    who = principal(request)
    if who.kind is Kind.SYSTEM:
        return params.reference("actor")
    if who.role is not None:
        role = who.role.practitioner_role
        return role if "/" in role else f"PractitionerRole/{role}"
    return who.fhir_user


def _finding(f: Finding) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "key", "valueString": f.key}, {"name": "kind", "valueCode": f.kind},
        {"name": "severity", "valueCode": f.severity.indicator}, {"name": "blocking", "valueBoolean": f.blocks_signing},
        {"name": "summary", "valueString": f.summary}, {"name": "detail", "valueString": f.detail}]
    if f.advice:
        parts.append({"name": "advice", "valueString": f.advice})
    parts.append({"name": "source", "valueString": f.source.label()})
    parts += [{"name": "evidence", "valueReference": {"reference": e.reference, "display": e.display[:250]}}
              for e in f.evidence if e.reference]
    return {"name": "finding", "part": parts}


def outcome_parameters(out: Outcome) -> dict[str, Any]:
    """An Outcome as the operations' Parameters response."""
    params: list[dict[str, Any]] = [{"name": "status", "valueCode": out.status}]
    params += [_finding(f) for f in out.findings]
    params += [{"name": "resource", "resource": r} for r in out.resources]
    return {"resourceType": "Parameters", "parameter": params}


async def _params(request: Request) -> Params:
    if not await request.body():
        return Params(None)
    return Params(await read_body(request))


def _operation(job: Job) -> Callable[[Request], Awaitable[Response]]:
    """A POST operation running ``job`` in one unit of the write queue."""
    async def endpoint(request: Request) -> Response:
        media = response_format(request)
        params = await _params(request)
        actor = _actor(request, params)
        ctx = request.app.state.ctx
        now = datetime.now(UTC)
        ix = guarded.interactions(request)  # the workflow's reads and writes pass the guard

        def run(unit: Unit) -> Outcome:
            try:
                return job(Records(ix, unit), params, actor, now)
            except FhirError as err:
                raise params.locate(err) from None
        out = await ctx.writes.run(run)
        return fhir_response(outcome_parameters(out), media=media)
    return endpoint


# -- the operations --------------------------------------------------------------------------------
def _with_id(request_job: Callable[[Records, str, Params, str | None, datetime], Outcome]) -> Callable[
        [Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        rid = request.path_params["id"]
        res_type = request.url.path.split("/")[2]  # /fhir/{type}/{id}/$op

        def job(r: Records, p: Params, a: str | None, n: datetime) -> Outcome:
            _visible(request, r.unit, res_type, rid)
            return request_job(r, rid, p, a, n)
        return await _operation(job)(request)
    return endpoint


def _visible(request: Request, unit: Unit, res_type: str, res_id: str) -> None:
    """NotFound (as for an unknown one) unless the caller may see the operation's instance."""
    g = guarded.guard(request)
    g.check_type(res_type)
    g.shown(unit.conn, unit.read(res_type, res_id))


def _checks(request: Request) -> tuple[KnowledgeBase, Resolver]:
    """The knowledge base and resolver of the app's CDS service (shared caches)."""
    svc = service(request)
    return svc.kb, svc.resolver


async def check(request: Request) -> Response:
    """``$check``: findings for a draft, nothing written (order-select)."""
    kb, resolver = _checks(request)
    return await _with_id(lambda r, rid, p, a, now: Outcome(
        "checked", [], ordering.check_draft(r, rid, kb, resolver, now)))(request)


async def sign(request: Request) -> Response:
    kb, resolver = _checks(request)
    return await _with_id(lambda r, rid, p, a, now: ordering.sign(
        r, rid, p.overrides(), a, now, kb, resolver, _organisation(p)))(request)


async def stop(request: Request) -> Response:
    return await _with_id(lambda r, rid, p, a, now: ordering.stop(r, rid, p.string("reason", True), a, now))(request)


async def change(request: Request) -> Response:
    kb, resolver = _checks(request)
    return await _with_id(lambda r, rid, p, a, now: ordering.change(
        r, rid, p.resource("replacement"), p.overrides(), a, now, kb, resolver, _organisation(p),
        p.string("reason")))(request)


def _organisation(p: Params) -> str | None:
    ref = p.reference("pharmacy")
    if ref is not None and not ref.startswith("Organization/"):
        raise Invalid("'pharmacy' must reference an Organization", p.where("pharmacy", "valueReference"))
    return ref.split("/", 1)[1] if ref else None


async def verify(request: Request) -> Response:
    kb, resolver = _checks(request)
    return await _with_id(lambda r, rid, p, a, now: pharmacy.verify(
        r, rid, a, now, kb=kb, resolver=resolver, overrides=p.overrides(), comment=p.string("comment")))(request)


async def query(request: Request) -> Response:
    return await _with_id(lambda r, rid, p, a, now: pharmacy.query(r, rid, a, p.string("question", True), now))(request)


async def reject(request: Request) -> Response:
    return await _with_id(lambda r, rid, p, a, now: pharmacy.reject(r, rid, a, p.string("reason", True), now))(request)


async def administer(request: Request) -> Response:
    kb, resolver = _checks(request)

    def job(r: Records, rid: str, p: Params, actor: str | None, now: datetime) -> Outcome:
        scanned = p._find("patientIdentifier")
        ident = (scanned[1].get("valueIdentifier") if scanned else None) or {}
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            raise Invalid("Scan the wristband or enter the NHS number: 'patientIdentifier' (valueIdentifier)",
                          p.where("patientIdentifier", "valueIdentifier"))
        dose = administration.Dose(p.code("status", True), ident["value"], str(ident.get("system") or ""),
                                   p.instant("scheduled"), p.coding("reason"), p.string("comment"))
        return administration.administer(r, rid, dose, actor, now, kb, resolver, p.overrides())
    return await _with_id(job)(request)


async def request_repeat(request: Request) -> Response:
    """``$request-repeat``: a patient (or proxy) may ask only for their own (or their granted
    patients') repeats; anyone else's answers 404, as a read of it would (no oracle)."""
    who = principal(request)

    def job(r: Records, rid: str, p: Params, actor: str | None, now: datetime) -> Outcome:
        if who.kind in (Kind.PATIENT, Kind.PROXY):
            owner = ordering.patient_of(r.get("MedicationRequest", rid))
            if owner not in who.patients and who.fhir_user != f"Patient/{owner}":
                raise NotFound(f"MedicationRequest/{rid} is not known")
        return repeats.request_repeat(r, rid, actor, now, p.string("comment"))
    return await _with_id(job)(request)


async def approve_repeat(request: Request) -> Response:
    kb, resolver = _checks(request)
    return await _with_id(lambda r, rid, p, a, now: repeats.approve(
        r, rid, a, p.overrides(), now, kb=kb, resolver=resolver))(request)


async def reject_repeat(request: Request) -> Response:
    return await _with_id(lambda r, rid, p, a, now: repeats.reject(r, rid, a, p.string("reason", True), now))(request)


async def issue(request: Request) -> Response:
    kb, resolver = _checks(request)
    return await _with_id(lambda r, rid, p, a, now: repeats.issue(
        r, rid, a, p.overrides(), now, kb=kb, resolver=resolver))(request)


async def dispense(request: Request) -> Response:
    kb, resolver = _checks(request)

    def job(r: Records, rid: str, p: Params, actor: str | None, now: datetime) -> Outcome:
        quantity = p._value("quantity", "valueQuantity", dict, False)
        return dispensing.dispense(r, rid, actor, now, quantity, p.string("comment"), kb=kb, resolver=resolver,
                                   overrides=p.overrides())
    return await _with_id(job)(request)


async def prescription(request: Request) -> Response:
    """``$prescription`` (GET): the issued prescription with prescriber, organisation and
    pharmacy, as a collection Bundle (the EPS essentials)."""
    ctx = request.app.state.ctx
    rid = request.path_params["id"]
    media = response_format(request)
    ix = guarded.interactions(request)

    def run(unit: Unit) -> dict[str, Any]:
        _visible(request, unit, "MedicationRequest", rid)
        return prescription_bundle(Records(ix, unit), rid, ctx.base)
    bundle = await ctx.writes.run(run)
    return fhir_response(bundle, media=media)


async def chart(request: Request) -> Response:
    """``$administration-chart`` (GET): the chart of ``date`` (default today, ward time)."""
    ctx = request.app.state.ctx
    pid = request.path_params["id"]
    media = response_format(request)
    raw = request.query_params.get("date")
    try:
        day = date.fromisoformat(raw) if raw else datetime.now(administration.WARD_TIME).date()
    except ValueError:
        raise Invalid(f"date must be YYYY-MM-DD, not {raw!r}", "date") from None
    now = datetime.now(UTC)

    ix = guarded.interactions(request)

    def run(unit: Unit) -> dict[str, Any]:
        records = Records(ix, unit)
        records.get("Patient", pid)
        _visible(request, unit, "Patient", pid)
        return chart_parameters(day, administration.chart(records, pid, day, now))
    return fhir_response(await ctx.writes.run(run), media=media)


def chart_parameters(day: date, lines: list[administration.ChartLine]) -> dict[str, Any]:
    """The chart as a Parameters resource: ``date``, then one ``line`` per order with its
    ``dose`` parts (due, state, record)."""
    params: list[dict[str, Any]] = [{"name": "date", "valueDate": day.isoformat()}]
    for line in lines:
        order = line.order
        parts: list[dict[str, Any]] = [{"name": "order", "valueReference": {"reference": f"MedicationRequest/{order['id']}"}}]
        if "medicationCodeableConcept" in order:
            parts.append({"name": "medication", "valueCodeableConcept": order["medicationCodeableConcept"]})
        text = next((d.get("text") for d in order.get("dosageInstruction", []) if d.get("text")), None)
        if text:
            parts.append({"name": "dosage", "valueString": text})
        parts += [{"name": "asNeeded", "valueBoolean": line.as_needed}, {"name": "verified", "valueBoolean": line.verified}]
        for slot in line.slots:
            dose: list[dict[str, Any]] = [{"name": "due", "valueDateTime": slot.due.isoformat()},
                                          {"name": "state", "valueCode": slot.state}]
            if slot.record:
                dose.append({"name": "record", "valueReference": {"reference": slot.record}})
            parts.append({"name": "dose", "part": dose})
        parts += [{"name": "given", "valueReference": {"reference": r}} for r in line.as_needed_given]
        params.append({"name": "line", "part": parts})
    return {"resourceType": "Parameters", "parameter": params}


_POST: tuple[tuple[str, str, Callable[[Request], Awaitable[Response]]], ...] = (
    ("MedicationRequest", "check", check), ("MedicationRequest", "sign", sign), ("MedicationRequest", "stop", stop),
    ("MedicationRequest", "change", change), ("MedicationRequest", "administer", administer),
    ("MedicationRequest", "request-repeat", request_repeat), ("MedicationRequest", "issue", issue),
    ("MedicationRequest", "dispense", dispense), ("Task", "verify", verify), ("Task", "query", query),
    ("Task", "reject", reject), ("Task", "approve-repeat", approve_repeat), ("Task", "reject-repeat", reject_repeat))
_GET = (("MedicationRequest", "prescription", prescription), ("Patient", "administration-chart", chart))


def routes() -> list[Route]:
    """The operations' routes (before the compartment-search route, which would take the GETs)."""
    return ([Route(f"/fhir/{t}/{{id}}/${name}", endpoint, methods=["POST"]) for t, name, endpoint in _POST]
            + [Route(f"/fhir/{t}/{{id}}/${name}", endpoint, methods=["GET"]) for t, name, endpoint in _GET])


def capability_operations() -> dict[str, list[dict[str, str]]]:
    """CapabilityStatement ``rest.resource.operation`` entries per resource type."""
    out: dict[str, list[dict[str, str]]] = {}
    for t, name, _ in (*_POST, *_GET):
        out.setdefault(t, []).append({"name": name, "definition": f"{_PREFIX}{t}-{name}"})
    return out
