"""A compiler for the subset of FHIRPath that search parameter expressions use.

FHIRPath (http://hl7.org/fhirpath/N1/) is the language of ``SearchParameter.expression``
(http://hl7.org/fhir/R4/searchparameter.html). Interpreting it per resource is far too slow for
write-time indexing, so this module parses an expression once and compiles it, *typed* against
the R4 element model (``carerecord.fhir.model``), into ``Chain`` values: linear sequences of
hashable steps through the JSON, each ending in one statically known FHIR type. Choice elements
(``Observation.value``) expand into one chain per concrete type, so ``as``/``ofType``/``is``
filters become compile-time choices and normalizers can be picked per chain before any
resource is seen. ``carerecord.fhir.indexing`` merges the chains of all parameters of a resource
type into one trie and walks each resource once.

Supported: member paths, a leading type name (``Observation.code``; another type's name selects
nothing), ``|``, ``as``/``is`` operators and ``as()``/``ofType()``, ``[n]``, ``first()``,
``where()`` over ``resolve() is T``, ``path = literal``, ``!=``, ``exists()``, ``and``/``or``,
``extension('url')``, ``%resource`` and ``$this``. Anything else raises ``Unsupported``, and
``compile_expression`` then keeps that union operand (or the whole expression) as a
``('fhirpath', text)`` step evaluated by fhirpathpy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Any, NamedTuple

from carerecord.fhir.model import children, is_primitive, resource_types

Step = tuple[Any, ...]  # ('get', key) | ('idx', n) | ('where', pred) | ('ext', url) | ('bool', pred)
#                         | ('root',) | ('fhirpath', text); preds are nested hashable tuples
StepFn = Callable[[list[Any], Any], list[Any]]  # (collection, root resource) -> collection
ABSTRACT = ("Resource", "DomainResource")
_PARENT = {"Age": "Quantity", "Distance": "Quantity", "Duration": "Quantity", "Count": "Quantity",
           "SimpleQuantity": "Quantity", "MoneyQuantity": "Quantity", "code": "string",
           "id": "string", "markdown": "string", "url": "uri", "canonical": "uri", "oid": "uri",
           "uuid": "uri", "positiveInt": "integer", "unsignedInt": "integer"}


class Unsupported(Exception):
    """The expression uses FHIRPath outside the compiled subset."""


class Chain(NamedTuple):
    """One typed path: the steps from the input collection and the FHIR type of what it selects
    (``'*'`` when unknown, i.e. after a fhirpathpy fallback step)."""

    steps: tuple[Step, ...]
    type: str


# ---------------------------------------------------------------- parsing
_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+(?:\.\d+)?)
    |(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)|(?P<var>%[A-Za-z_][A-Za-z0-9_]*|\$this)
    |(?P<op>!=|!~|<=|>=|[.()\[\]|=,<>~+\-*/&@]))""", re.X)


def _tokenize(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenize {text[pos:]!r}")
        kind = m.lastgroup or ""
        val: Any = m.group(kind)
        if kind == "str":
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        elif kind == "num":
            val = float(val) if "." in val else int(val)
        elif kind == "id":
            val = val.strip("`")
        out.append((kind, val))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over FHIRPath's precedence levels; AST nodes are plain tuples."""

    def __init__(self, text: str) -> None:
        self.toks, self.i = _tokenize(text), 0

    def peek(self, val: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        kind, v = self.toks[self.i]
        return val is None or (v == val and kind in ("op", "id"))

    def take(self, val: str | None = None) -> Any:
        if val is not None and not self.peek(val):
            raise Unsupported(f"expected {val!r}")
        if self.i >= len(self.toks):
            raise Unsupported("unexpected end of expression")
        self.i += 1
        return self.toks[self.i - 1][1]

    def parse(self) -> tuple[Any, ...]:
        node = self.or_()
        if self.i != len(self.toks):
            raise Unsupported(f"unexpected {self.toks[self.i][1]!r}")
        return node

    def or_(self) -> tuple[Any, ...]:
        node = self.and_()
        while self.peek("or"):
            self.take()
            node = ("or", node, self.and_())
        return node

    def and_(self) -> tuple[Any, ...]:
        node = self.eq()
        while self.peek("and"):
            self.take()
            node = ("and", node, self.eq())
        return node

    def eq(self) -> tuple[Any, ...]:
        node = self.union()
        if self.peek("=") or self.peek("!="):
            op = "eq" if self.take() == "=" else "ne"
            node = (op, node, self.union())
        return node

    def union(self) -> tuple[Any, ...]:
        node = self.typed()
        while self.peek("|"):
            self.take()
            node = ("union", node, self.typed())
        return node

    def typed(self) -> tuple[Any, ...]:
        node = self.postfix()
        while self.peek("as") or self.peek("is"):
            op = self.take()
            node = (op, node, self.typename())
        return node

    def typename(self) -> str:
        name = str(self.take())
        if self.peek("."):
            self.take()
            name = str(self.take())  # FHIR.Quantity / System.String -> the last part
        return name

    def postfix(self) -> tuple[Any, ...]:
        node = self.term()
        while True:
            if self.peek("."):
                self.take()
                name = str(self.take())
                node = ("call", node, name, self.args()) if self.peek("(") else ("dot", node, name)
            elif self.peek("["):
                self.take()
                node = ("idx", node, self.or_())
                self.take("]")
            else:
                return node

    def args(self) -> tuple[tuple[Any, ...], ...]:
        self.take("(")
        out: list[tuple[Any, ...]] = []
        while not self.peek(")"):
            out.append(self.or_())
            if self.peek(","):
                self.take()
        self.take(")")
        return tuple(out)

    def term(self) -> tuple[Any, ...]:
        kind, val = self.toks[self.i] if self.i < len(self.toks) else ("end", None)
        if kind == "op" and val == "(":
            self.take()
            node = self.or_()
            self.take(")")
            return node
        self.take()
        if kind in ("str", "num"):
            return ("lit", val)
        if kind == "var":
            return ("var", val)
        if kind == "id" and val in ("true", "false"):
            return ("lit", val == "true")
        if kind == "id":
            return ("fn", val, self.args()) if self.peek("(") else ("id", val)
        raise Unsupported(f"unexpected {val!r}")


def parse(text: str) -> tuple[Any, ...]:
    """The AST of ``text``; raises ``Unsupported`` for syntax outside the subset."""
    return _Parser(text).parse()


# ---------------------------------------------------------------- typed compilation
def type_matches(actual: str, wanted: str) -> bool:
    """Whether a value of FHIR type ``actual`` passes ``as wanted`` (profiles and primitive
    specialisations count; System.DateTime matches dateTime)."""
    t: str | None = actual
    while t is not None:
        if t == wanted or t.lower() == wanted.lower():
            return True
        t = _PARENT.get(t)
    return False


def _member(chain: Chain, name: str) -> list[Chain]:
    if chain.type in ABSTRACT and chain.steps or chain.type == "*":
        raise Unsupported(f"navigation into untyped {chain.type}")
    kids = children(chain.type)
    if kids is None:
        if is_primitive(chain.type) and name not in ("extension", "id"):
            return []  # primitives have no members (their extensions live under "_name")
        raise Unsupported(f"member {name} of {chain.type}")
    hit = kids.get(name)
    if hit is not None and hit[0].name == name:
        return [Chain(chain.steps + (("get", name),), hit[1])]
    return [Chain(chain.steps + (("get", key),), typ)
            for key, (el, typ) in kids.items() if el.name == name + "[x]"]


def _is_type_name(name: str, chain_type: str) -> bool | None:
    """True: the name is the chain's own type; False: another type (selects nothing);
    None: not a type name, so it is a member."""
    if not name[:1].isupper():
        return None
    if name == chain_type or (name in ABSTRACT and chain_type in resource_types()):
        return True
    return False


class _Compiler:
    def __init__(self, root_type: str) -> None:
        self.root_type = root_type

    def chains(self, node: tuple[Any, ...], inputs: list[Chain]) -> list[Chain]:
        kind = node[0]
        if kind == "id":
            out: list[Chain] = []
            for c in inputs:
                own = _is_type_name(node[1], c.type)
                out += [c] if own else [] if own is False else _member(c, node[1])
            return out
        if kind == "dot":
            return [m for c in self.chains(node[1], inputs) for m in _member(c, node[2])]
        if kind == "union":
            return self.chains(node[1], inputs) + self.chains(node[2], inputs)
        if kind == "as":
            return [c for c in self.chains(node[1], inputs) if type_matches(c.type, node[2])]
        if kind == "var":
            if node[1] == "$this":
                return inputs
            if node[1] in ("%resource", "%rootResource"):
                return [Chain((("root",),), self.root_type)]
            raise Unsupported(f"variable {node[1]}")
        if kind == "idx":
            base = self.chains(node[1], inputs)
            if node[2][0] != "lit" or type(node[2][1]) is not int or len(base) != 1:
                raise Unsupported("index")
            return [Chain(base[0].steps + (("idx", node[2][1]),), base[0].type)]
        if kind == "call" and node[2] == "exists" and not node[3]:
            return [Chain(c.steps + (("bool", self.pred(node, c.type)),), "boolean") for c in inputs]
        if kind in ("call", "fn"):
            base = self.chains(node[1], inputs) if kind == "call" else inputs
            return self.call(node[-2], node[-1], base)
        if kind in ("and", "or", "eq", "ne"):
            return [Chain(c.steps + (("bool", self.pred(node, c.type)),), "boolean") for c in inputs]
        raise Unsupported(f"{kind} outside where()")

    def call(self, name: str, args: tuple[Any, ...], base: list[Chain]) -> list[Chain]:
        if name in ("as", "ofType") and len(args) == 1 and args[0][0] in ("id", "dot"):
            return [c for c in base if type_matches(c.type, args[0][-1])]  # T or FHIR.T
        if name == "first" and not args and len(base) == 1:
            return [Chain(base[0].steps + (("idx", 0),), base[0].type)]
        if name == "where" and len(args) == 1:
            return [Chain(c.steps + (("where", self.pred(args[0], c.type)),), c.type) for c in base]
        if name == "extension" and len(args) == 1 and args[0][0] == "lit":
            return [Chain(c.steps + (("ext", args[0][1]),), "Extension") for c in base
                    if _member(c, "extension")]  # raises Unsupported on primitives
        raise Unsupported(f"function {name}()")

    def pred(self, node: tuple[Any, ...], item_type: str) -> tuple[Any, ...]:
        """A hashable predicate spec over one item of ``item_type`` (three-valued)."""
        kind = node[0]
        if kind in ("and", "or"):
            return (kind, self.pred(node[1], item_type), self.pred(node[2], item_type))
        if kind in ("eq", "ne") and node[2][0] == "lit":
            lhs = self.chains(node[1], [Chain((), item_type)])
            return (kind, tuple(lhs), node[2][1])
        if (kind == "is" and node[1] == ("fn", "resolve", ()) and item_type in ("Reference", "*")):
            return ("refis", node[2])
        if kind == "call" and node[2] == "exists" and not node[3]:
            return ("exists", tuple(self.chains(node[1], [Chain((), item_type)])))
        if kind == "lit" and type(node[1]) is bool:
            return ("const", node[1])
        raise Unsupported(f"condition {kind}")


def _split_union(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth, quoted = 0, False
    for ch in text:
        quoted ^= ch == "'"
        depth += (ch == "(") - (ch == ")") if not quoted else 0
        if ch == "|" and depth == 0 and not quoted:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    return parts + ["".join(cur).strip()]


@cache
def compile_expression(expression: str, input_type: str, root_type: str | None = None) -> tuple[Chain, ...]:
    """Typed chains selecting what ``expression`` selects from an item of ``input_type``.

    ``root_type`` is the resource type ``%resource`` refers to (default: ``input_type``). Union
    operands outside the subset become single ``('fhirpath', operand)`` chains of type ``'*'``
    (only at the top level, i.e. when the input is the root); never raises for them.
    """
    comp = _Compiler(root_type or input_type)
    try:
        return tuple(comp.chains(parse(expression), [Chain((), input_type)]))
    except Unsupported:
        if input_type != (root_type or input_type):
            raise
    out: list[Chain] = []
    for part in _split_union(expression):
        try:
            out += comp.chains(parse(part), [Chain((), input_type)])
        except Unsupported:
            out.append(Chain((("fhirpath", part),), "*"))
    return tuple(out)


def is_native(chains: tuple[Chain, ...]) -> bool:
    """Whether no chain needs fhirpathpy."""
    return not any(s[0] == "fhirpath" for c in chains for s in c.steps)


# ---------------------------------------------------------------- runtime
@cache
def _resource_type_set() -> frozenset[str]:
    return resource_types() | frozenset(ABSTRACT)


@lru_cache(maxsize=65536)
def parse_reference(ref: str) -> tuple[str | None, str | None, str | None] | None:
    """``(type, id, url)`` of a Reference.reference string (http://hl7.org/fhir/R4/references.html).

    ``Patient/1`` and ``Patient/1/_history/2`` -> ``('Patient', '1', None)``; an absolute URL
    ending in a type and id -> ``(type, id, url)``; ``urn:uuid:``/``urn:oid:`` and other URLs ->
    ``(None, None, url)``; a local ``#contained`` reference or an empty string -> None.
    """
    if not ref or ref[0] == "#":
        return None
    if ref.startswith("urn:"):
        return (None, None, ref)
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-1] and parts[-2] in _resource_type_set():
        return (parts[-2], parts[-1], ref if len(parts) > 2 else None)
    return (None, None, ref)


def reference_type(item: Any, root: Any = None) -> str | None:
    """The target type of a Reference element (what ``resolve() is T`` tests), or None. A local
    ``#id`` reference resolves to the type of the resource of that id in ``root``'s
    ``contained`` (references.html#contained); without ``root`` it has none."""
    ref = item.get("reference") if type(item) is dict else None
    if not isinstance(ref, str):
        return None
    if ref[:1] == "#":
        return local_type(ref, root)
    parsed = parse_reference(ref)
    return parsed[0] if parsed else None


def local_type(ref: str, root: Any) -> str | None:
    """The type of the contained resource a local reference ``#id`` names in ``root`` (a
    resource, or a contained resource with its container's ``contained`` list beside it, see
    ``indexing.extract``), or None: ``#`` alone (the container) and unknown ids resolve to none."""
    inner = root.get("contained") if type(root) is dict and len(ref) > 1 else None
    if type(inner) is not list:
        return None
    want = ref[1:]
    for c in inner:
        if type(c) is dict and c.get("id") == want and type(c.get("resourceType")) is str:
            return c["resourceType"]  # type: ignore[no-any-return]
    return None


def _same(value: Any, literal: Any) -> bool:
    if isinstance(literal, bool) or isinstance(value, bool):
        return type(value) is type(literal) and value == literal
    return bool(value == literal)


Pred = Callable[[Any, Any], "bool | None"]


@cache
def predicate(spec: tuple[Any, ...]) -> Pred:
    """The three-valued test (True / False / None for empty) of a predicate spec."""
    kind = spec[0]
    if kind == "refis":
        want = spec[1]
        return lambda item, root: reference_type(item, root) == want or (
            want == "Resource" and reference_type(item, root) is not None)
    if kind == "const":
        value: bool = spec[1]
        return lambda item, root: value
    if kind in ("and", "or"):
        p, q = predicate(spec[1]), predicate(spec[2])
        stop = kind == "or"  # the value that decides alone

        def both(item: Any, root: Any) -> bool | None:
            a, b = p(item, root), q(item, root)
            if a is stop or b is stop:
                return stop
            return None if a is None or b is None else not stop
        return both
    runs = [runnable(c) for c in spec[1]]
    if kind == "exists":
        return lambda item, root: bool(run_all(runs, [item], root))
    lit, negate = spec[2], kind == "ne"

    def compare(item: Any, root: Any) -> bool | None:
        vals = run_all(runs, [item], root)
        if not vals:
            return None
        return (len(vals) == 1 and _same(vals[0], lit)) is not negate
    return compare


def _get(key: str) -> StepFn:
    def get(items: list[Any], root: Any) -> list[Any]:
        out: list[Any] = []
        for it in items:
            v = it.get(key) if type(it) is dict else None
            if v is not None:
                if type(v) is list:
                    out.extend(v)
                else:
                    out.append(v)
        return out
    return get


def _ext(url: str) -> StepFn:
    def ext(items: list[Any], root: Any) -> list[Any]:
        return [e for it in items if type(it) is dict for e in it.get("extension") or ()
                if type(e) is dict and e.get("url") == url]
    return ext


def _where(spec: tuple[Any, ...]) -> StepFn:
    test = predicate(spec)
    return lambda items, root: [it for it in items if test(it, root) is True]


def _bool(spec: tuple[Any, ...]) -> StepFn:
    test = predicate(spec)
    return lambda items, root: [v for it in items if (v := test(it, root)) is not None]


def _fp_resolve(coll: list[Any]) -> list[Any]:
    from fhirpathpy.engine.nodes import ResourceNode
    out = []
    for item in coll:
        data = item.data if isinstance(item, ResourceNode) else item
        target = reference_type(data)
        if target:
            out.append(ResourceNode.create_node({"resourceType": target}))
    return out


def fhirpath_options() -> dict[str, Any]:
    """fhirpathpy options giving it a ``resolve()`` that knows a reference's type only."""
    return {"userInvocationTable": {"resolve": {"fn": _fp_resolve, "arity": {0: []}}}}


@cache
def _fhirpathpy(text: str) -> Callable[..., list[Any]]:
    import fhirpathpy
    from fhirpathpy.models import models
    return fhirpathpy.compile(text, models["r4"], fhirpath_options())  # type: ignore[no-any-return]


def _fallback(text: str) -> StepFn:
    def evaluate(items: list[Any], root: Any) -> list[Any]:
        fn = _fhirpathpy(text)
        try:
            return [v for it in items for v in fn(it, {})]
        except Exception:  # fhirpathpy rejects e.g. `as` on several items; index nothing then
            return []
    return evaluate


@cache
def step_function(step: Step) -> StepFn:
    """The runtime function of one step: (collection, root resource) -> collection."""
    kind = step[0]
    if kind == "get":
        return _get(step[1])
    if kind == "idx":
        n: int = step[1]
        return lambda items, root: items[n:n + 1]
    if kind == "where":
        return _where(step[1])
    if kind == "ext":
        return _ext(step[1])
    if kind == "bool":
        return _bool(step[1])
    if kind == "root":
        return lambda items, root: [root]
    if kind == "fhirpath":
        return _fallback(step[1])
    raise ValueError(f"unknown step {step!r}")


def runnable(chain: Chain) -> tuple[StepFn, ...]:
    return tuple(step_function(s) for s in chain.steps)


def run(fns: tuple[StepFn, ...], items: list[Any], root: Any) -> list[Any]:
    """Apply one chain's step functions to a collection."""
    for fn in fns:
        if not items:
            return items
        items = fn(items, root)
    return items


def run_all(runs: list[tuple[StepFn, ...]], items: list[Any], root: Any) -> list[Any]:
    out: list[Any] = []
    for fns in runs:
        out += run(fns, items, root)
    return out


def select(expression: str, resource: dict[str, Any]) -> list[tuple[str, Any]]:
    """(FHIR type, element) pairs the compiled ``expression`` selects from ``resource``
    (slow path, for tests and one-off use; indexing walks a merged trie instead)."""
    chains = compile_expression(expression, resource["resourceType"])
    return [(c.type, v) for c in chains for v in run(runnable(c), [resource], resource)]


def check_syntax(expression: str) -> None:
    """Raise ``ValueError`` unless ``expression`` is syntactically valid FHIRPath (checked
    strictly with fhirpathpy's ANTLR grammar, whose own ``parse`` silently recovers)."""
    from antlr4 import CommonTokenStream, InputStream, Token
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class _Raise(ErrorListener):  # type: ignore[misc]
        def syntaxError(self, recognizer: Any, symbol: Any, line: int, col: int, msg: str,
                        e: Any) -> None:
            raise ValueError(f"column {col}: {msg}")

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    stream = CommonTokenStream(lexer)
    parser = FHIRPathParser(stream)
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    parser.expression()
    if stream.LA(1) != Token.EOF:
        raise ValueError("unexpected text after the expression")
