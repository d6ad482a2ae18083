"""OpenAPI import: Swagger 2.0, OpenAPI 3.0 and 3.1, JSON or YAML, plain or an Azure API Management export.

Pure functions (no database, no sockets except ``read_source`` for the CLI): a document's bytes become
a ``ParsedSpec`` — the API's base URL and its operations with names, full path templates, declared
security, deprecated flags and declared parameters. Every problem is a ``SpecError`` naming the source,
the JSON pointer (RFC 6901) and what is wrong; nothing is half-imported because nothing is written
until the whole document parsed.

Endpoint paths are built with ``sensor.routing.join_base_path`` / ``base_path_of`` so that the
templates here and the templates a sensor routes traffic to are the same strings.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from sensor.routing import HTTP_METHODS, base_path_of, join_base_path

MAX_OPERATIONS = 20_000
NAME_MAX = 200
_FETCH_TIMEOUT = 30.0
# Parameter locations as the sensor reports them (``sensor.events.ParamSeen.location``).
_LOCATIONS = {"query": "query", "path": "path", "header": "header", "cookie": "cookie", "formData": "body"}
_APIM_FORMATS = {"openapi+json", "openapi", "swagger-json", "openapi-json", "swagger"}


class SpecError(ValueError):
    """An import problem: where (source and JSON pointer) and what."""

    def __init__(self, source: str, pointer: str, problem: str) -> None:
        super().__init__(f"{source}: {pointer or '/'}: {problem}")
        self.source = source
        self.pointer = pointer or "/"
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # upper case
    path: str  # full template: base path joined with the spec path
    name: str | None  # operationId, else summary
    operation_id: str | None
    deprecated: bool
    # Requirement alternatives (each a list of scheme names); None when the spec says nothing.
    security: list[list[str]] | None
    params: list[tuple[str, str]]  # (sensor location, name)
    body_declared: bool  # top-level request body properties are known

    @property
    def requires_auth(self) -> bool:
        """The spec demands a credential: requirements exist and none of them is empty (anonymous)."""
        return bool(self.security) and all(self.security or [])


@dataclass(frozen=True, slots=True)
class ParsedSpec:
    api: str
    title: str
    version: str
    spec_format: str
    base_url: str
    base_path: str
    source: str
    operations: list[Operation] = field(default_factory=list)

    def template_list(self) -> list[dict[str, str | None]]:
        """The compact operation list sensors load into their routers."""
        return [{"method": o.method, "path": o.path, "name": o.name} for o in self.operations]

    def etag(self) -> str:
        body = json.dumps([self.api, self.template_list()], sort_keys=True).encode()
        return hashlib.sha256(body).hexdigest()[:32]


def pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


# --- reading -------------------------------------------------------------------------------------


def read_source(location: str) -> tuple[bytes, str]:
    """The bytes of a file or an http(s) URL (blocking; the CLI and tests use it)."""
    if location.startswith(("http://", "https://")):
        request = urllib.request.Request(location, headers={"Accept": "application/json, application/yaml"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT) as response:  # noqa: S310 (scheme checked)
                return response.read(), location
        except (urllib.error.URLError, OSError) as exc:
            raise SpecError(location, "/", f"cannot fetch: {getattr(exc, 'reason', exc)}") from None
    try:
        with open(location, "rb") as fh:
            return fh.read(), location
    except OSError as exc:
        raise SpecError(location, "/", f"cannot read: {exc.strerror}") from None


def load_document(data: bytes, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Decode JSON or YAML; unwrap an APIM ARM-style export. Returns (document, wrapper hints)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(source, "/", f"not UTF-8 text (byte {exc.start})") from None
    doc = _decode_text(text, source)
    hints: dict[str, Any] = {}
    wrapped = _apim_wrapper(doc)
    if wrapped is not None:
        props, where = wrapped
        fmt = props.get("format")
        if fmt not in _APIM_FORMATS:
            raise SpecError(source, where + "/format", f"unsupported API Management export format {fmt!r}")
        value = props.get("value")
        if not isinstance(value, str):
            raise SpecError(source, where + "/value", "must be the exported document as a string")
        hints = {k: props[k] for k in ("displayName", "path") if isinstance(props.get(k), str)}
        doc = _decode_text(value, f"{source}#{where}/value")
    if not isinstance(doc, dict):
        raise SpecError(source, "/", "the document must be a JSON/YAML object")
    return doc, hints


def _decode_text(text: str, source: str) -> Any:
    if text.lstrip().startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise SpecError(source, "/", f"invalid JSON: {exc}") from None
    try:
        # The C loader when available: the large real specs (Stripe's 4 MB) load in about a second.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(text, Loader=loader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(source, "/", f"invalid YAML{where}: {problem}") from None


def _apim_wrapper(doc: Any) -> tuple[dict[str, Any], str] | None:
    """``{"properties": {"format", "value"}}``, also as the first resource of an ARM template."""
    if not isinstance(doc, dict) or "paths" in doc:
        return None
    props = doc.get("properties")
    if isinstance(props, dict) and "value" in props:
        return props, "/properties"
    resources = doc.get("resources")
    if isinstance(resources, list):
        for i, res in enumerate(resources):
            props = res.get("properties") if isinstance(res, dict) else None
            if isinstance(props, dict) and "value" in props and "format" in props:
                return props, pointer("resources", i, "properties")
    return None


# --- parsing -------------------------------------------------------------------------------------


def parse_spec(data: bytes, source: str, api: str | None = None) -> ParsedSpec:
    doc, hints = load_document(data, source)
    return parse_document(doc, source, api, hints)


def parse_document(
    doc: Mapping[str, Any], source: str, api: str | None = None, hints: Mapping[str, Any] | None = None
) -> ParsedSpec:
    hints = hints or {}
    spec_format = _format(doc, source)
    info = doc.get("info", {})
    if not isinstance(info, Mapping):
        raise SpecError(source, "/info", "must be an object")
    title = _short(info.get("title")) or str(hints.get("displayName", "")) or "untitled"
    paths = doc.get("paths")
    if not isinstance(paths, Mapping):
        raise SpecError(source, "/paths", "missing or not an object")
    base_path = base_path_of(doc)
    if base_path == "/" and isinstance(hints.get("path"), str) and "servers" not in doc:
        base_path = join_base_path("/", hints["path"])  # APIM: the gateway's URL suffix
    base_url = _base_url(doc, base_path)
    api_name = (api or _default_api_name(base_url, title)).strip()
    if not api_name or len(api_name) > NAME_MAX or "\x00" in api_name:
        raise SpecError(source, "/", f"API name must be 1-{NAME_MAX} characters without NUL")
    resolver = _Resolver(doc, source)
    global_security = _security(doc.get("security"), source, pointer("security")) if "security" in doc else None
    seen: dict[tuple[str, str], Operation] = {}
    for raw_path, item in paths.items():
        where = pointer("paths", str(raw_path))
        if not isinstance(raw_path, str) or not raw_path.startswith("/"):
            raise SpecError(source, where, "a path must start with '/'")
        if raw_path.startswith("/x-") or not isinstance(item, Mapping):
            if isinstance(item, Mapping):
                continue
            raise SpecError(source, where, "a path item must be an object")
        item = resolver.deref(item, where)  # noqa: PLW2901 (a path item may be a $ref)
        template = join_base_path(base_path, raw_path)
        shared = _params(item.get("parameters"), resolver, where + "/parameters")
        for method, op in item.items():
            if not isinstance(method, str) or method.lower() not in HTTP_METHODS:
                continue
            op_where = where + pointer(method)
            if not isinstance(op, Mapping):
                raise SpecError(source, op_where, "an operation must be an object")
            operation = _operation(method, template, op, op_where, shared, global_security, resolver)
            seen.setdefault((operation.method, operation.path), operation)
            if len(seen) > MAX_OPERATIONS:
                raise SpecError(source, "/paths", f"more than {MAX_OPERATIONS} operations")
    return ParsedSpec(
        api=api_name,
        title=title,
        version=_short(info.get("version")) or "",
        spec_format=spec_format,
        base_url=base_url,
        base_path=base_path,
        source=source[:2048],
        operations=list(seen.values()),
    )


def _format(doc: Mapping[str, Any], source: str) -> str:
    if "swagger" in doc:
        if str(doc["swagger"]) != "2.0":
            raise SpecError(source, "/swagger", f"unsupported Swagger version {doc['swagger']!r} (2.0 is)")
        return "swagger 2.0"
    version = doc.get("openapi")
    if not isinstance(version, str):
        raise SpecError(source, "/openapi", "missing: not an OpenAPI 3.x or Swagger 2.0 document")
    if not re.fullmatch(r"3\.[01]\.\d+(-[\w.]+)?", version):
        raise SpecError(source, "/openapi", f"unsupported OpenAPI version {version!r} (3.0.x and 3.1.x are)")
    return f"openapi {version}"


def _short(value: Any, limit: int = 300) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _base_url(doc: Mapping[str, Any], base_path: str) -> str:
    if "swagger" in doc:
        host = doc.get("host")
        schemes = doc.get("schemes")
        scheme = schemes[0] if isinstance(schemes, list) and schemes and isinstance(schemes[0], str) else "https"
        return f"{scheme}://{host}{base_path.rstrip('/')}" if isinstance(host, str) and host else base_path
    servers = doc.get("servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], Mapping):
        url = servers[0].get("url")
        if isinstance(url, str):
            for name, var in (servers[0].get("variables") or {}).items():
                if isinstance(var, Mapping) and "default" in var:
                    url = url.replace("{" + str(name) + "}", str(var["default"]))
            return url[:2048]
    return base_path


def _default_api_name(base_url: str, title: str) -> str:
    # The sensor names an API after its upstream's host by default; the spec's server host is the
    # best guess of that. Without an absolute server URL the title is all there is.
    host = urllib.parse.urlsplit(base_url).hostname if "://" in base_url else None
    return (host or title)[:NAME_MAX]


class _Resolver:
    """Local ``$ref`` (``#/...``) resolution with a depth bound; other refs are reported."""

    def __init__(self, doc: Mapping[str, Any], source: str) -> None:
        self.doc = doc
        self.source = source

    def deref(self, node: Any, where: str, depth: int = 0) -> Any:
        if not isinstance(node, Mapping) or "$ref" not in node:
            return node
        ref = node["$ref"]
        if depth > 16:
            raise SpecError(self.source, where, "$ref chain is too deep (a cycle?)")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SpecError(self.source, where + "/$ref", f"only local references are supported, not {ref!r}")
        target: Any = self.doc
        for raw in ref[2:].split("/"):
            part = urllib.parse.unquote(raw).replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise SpecError(self.source, where + "/$ref", f"{ref!r} does not resolve")
            target = target[part]
        return self.deref(target, where, depth + 1)


def _params(raw: Any, resolver: _Resolver, where: str) -> dict[tuple[str, str], bool]:
    """Declared parameters as {(location, name): is_body_schema}; a Swagger 2 body parameter
    contributes its schema's top-level properties."""
    out: dict[tuple[str, str], bool] = {}
    if raw is None:
        return out
    if not isinstance(raw, list):
        raise SpecError(resolver.source, where, "must be an array")
    for i, p in enumerate(raw):
        here = f"{where}/{i}"
        p = resolver.deref(p, here)  # noqa: PLW2901
        if not isinstance(p, Mapping):
            raise SpecError(resolver.source, here, "a parameter must be an object")
        name, loc = p.get("name"), p.get("in")
        if not isinstance(name, str) or not name:
            raise SpecError(resolver.source, here + "/name", "missing or not a string")
        if loc == "body":
            for prop in _properties(p.get("schema"), resolver, here + "/schema") or ():
                out[("body", prop)] = True
            out[("\x00body", "")] = True  # marker: the body is declared
            continue
        if loc not in _LOCATIONS:
            raise SpecError(resolver.source, here + "/in", f"unknown parameter location {loc!r}")
        if loc == "formData":
            out[("\x00body", "")] = True
        out[(_LOCATIONS[loc], name)] = False
    return out


def _properties(schema: Any, resolver: _Resolver, where: str, depth: int = 0) -> list[str] | None:
    """Top-level property names of an object schema (through $ref and allOf); None when unknown."""
    schema = resolver.deref(schema, where)
    if not isinstance(schema, Mapping) or depth > 8:
        return None
    names: list[str] = []
    known = False
    props = schema.get("properties")
    if isinstance(props, Mapping):
        names.extend(str(k) for k in props)
        known = True
    for i, part in enumerate(schema.get("allOf") or []):
        sub = _properties(part, resolver, f"{where}/allOf/{i}", depth + 1)
        if sub is not None:
            names.extend(sub)
            known = True
    if schema.get("additionalProperties") not in (None, False):
        return None  # open-ended object: any name is documented
    return names if known else None


def _security(raw: Any, source: str, where: str) -> list[list[str]]:
    if not isinstance(raw, list):
        raise SpecError(source, where, "must be an array of security requirement objects")
    alternatives: list[list[str]] = []
    for i, req in enumerate(raw):
        if not isinstance(req, Mapping):
            raise SpecError(source, f"{where}/{i}", "a security requirement must be an object")
        alternatives.append(sorted(str(k) for k in req))
    return alternatives


def _operation(  # noqa: PLR0917 (one call site; the pieces are all distinct)
    method: str,
    template: str,
    op: Mapping[str, Any],
    where: str,
    shared: dict[tuple[str, str], bool],
    global_security: list[list[str]] | None,
    resolver: _Resolver,
) -> Operation:
    source = resolver.source
    op_id = op.get("operationId")
    if op_id is not None and not isinstance(op_id, str):
        raise SpecError(source, where + "/operationId", "must be a string")
    deprecated = op.get("deprecated", False)
    if not isinstance(deprecated, bool):
        raise SpecError(source, where + "/deprecated", "must be true or false")
    security = _security(op["security"], source, where + "/security") if "security" in op else global_security
    declared = dict(shared)
    declared.update(_params(op.get("parameters"), resolver, where + "/parameters"))
    body_declared = ("\x00body", "") in declared and any(loc == "body" for loc, _ in declared)
    body = resolver.deref(op.get("requestBody"), where + "/requestBody")
    if isinstance(body, Mapping):
        content = body.get("content")
        if isinstance(content, Mapping):
            body_declared = True
            for media, media_obj in content.items():
                schema = media_obj.get("schema") if isinstance(media_obj, Mapping) else None
                props = _properties(schema, resolver, f"{where}/requestBody/content/{pointer(media)[1:]}/schema")
                if props is None:
                    body_declared = False  # any body field could be documented: do not judge
                    break
                declared.update({("body", p): True for p in props})
    name = op_id.strip() if isinstance(op_id, str) and op_id.strip() else _short(op.get("summary"), NAME_MAX)
    params = sorted({k for k in declared if not k[0].startswith("\x00")})
    return Operation(
        method=method.upper(),
        path=template,
        name=(name or None) and name[:NAME_MAX],
        operation_id=op_id.strip()[:NAME_MAX] if isinstance(op_id, str) and op_id.strip() else None,
        deprecated=deprecated,
        security=security,
        params=params,
        body_declared=body_declared,
    )


__all__ = ["Operation", "ParsedSpec", "SpecError", "load_document", "parse_document", "parse_spec", "read_source"]
