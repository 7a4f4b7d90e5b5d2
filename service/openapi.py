"""The OpenAPI document as the service really behaves: BentoML's generated `/docs.json`, corrected.

BentoML documents its own generic error bodies (`{"error": string}`), leaves out the GET/PUT
routes of our mounted Starlette app, sets `info.version` to "None" when no bento version
exists, and renders optional parameters (`"profile": null` is accepted) as non-nullable. This
module patches the generated document once per request of `/docs.json` (an ASGI middleware),
so the document always follows the code it describes: the one error body of service.http with
its statuses (400, 401, 403, 408, 413, 415, 500, 503), every route, the package version, nullability as
accepted. tests/service/test_openapi.py runs schemathesis against it.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache

from service.errors import KINDS

DOCS_PATH = "/docs.json"

ERROR_BODY = {
    "type": "object",
    "title": "ErrorBody",
    "description": "Every error of /v1/*: the kind, the offending field for invalid input, a message.",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["kind", "message"],
        "properties": {
            "kind": {"type": "string", "enum": list(KINDS)},
            "field": {"type": "string", "description": "the offending field, e.g. items[2].response"},
            "message": {"type": "string"},
        },
    }},
}
_REF = {"$ref": "#/components/schemas/ErrorBody"}
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
ERRORS = {
    "400": "Invalid input: the field and why",
    "401": "The server requires an API key (Authorization: Bearer <key>) and none or a wrong one came",
    "413": "Request body over max_body_bytes",
    "415": "Form-encoded or multipart body: send JSON",
    "500": "Backend failure (details in the server log only)",
    "503": "Overloaded (queue full, or the estimated wait over max_wait_s) or shutting down; retry after Retry-After",
    "408": "The request's own X-Request-Timeout passed first; its queued work was dropped",
}

FEEDBACK_TYPE = {
    "type": "object",
    "required": ["name", "granularity", "kind", "default_weight", "model_version", "runtime", "provider",
                 "batch_invariant", "reads_reference", "reference_min_words", "reference_min_context_share", "quality"],
    "properties": {
        "name": {"type": "string"}, "granularity": {"type": "string", "enum": ["sub-sentence", "sentence", "response"]},
        "kind": {"type": "string", "enum": ["segment_classifier", "preference_scorer", "prefix_delta"]},
        "default_weight": {"type": "number"}, "model_version": {"type": "string"}, "runtime": {"type": "string"},
        "provider": {"type": "string"}, "batch_invariant": {"type": "boolean"},
        "reads_reference": {"type": "boolean", "description": "false: the type's scores never change with an "
                                                                 "item's reference"},
        "reference_min_words": {"type": "integer", "minimum": 0,
                                "description": "a reference with fewer distinct content words is not read (0: any)"},
        "reference_min_context_share": {"type": "number", "minimum": 0, "maximum": 1,
                                        "description": "a reference sharing less of its content words with the "
                                                       "question and passages is ignored as another question's"},
        "quality": {"type": "object", "additionalProperties": {"type": "number"},
                    "description": "how the type's model agreed with human labels on the cross-validation its "
                                   "checkpoint records (e.g. auc, auc_std, lexical_auc, majority_accuracy; "
                                   "pairwise_accuracy, prefer_earlier_accuracy; *_with_reference for items "
                                   "with a reference; cv_folds, cv_records); empty when none is recorded"},
    },
}
WEIGHTS = {"type": "object", "additionalProperties": {"type": "number"}}
TIMEOUT_PARAMETER = {"name": "X-Request-Timeout", "in": "header", "required": False,
                     "description": "seconds; past them the work is dropped and the answer is 408",
                     "schema": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 3600}}


def _errors(codes) -> dict:
    out = {}
    for code in codes:
        entry = {"description": ERRORS.get(code, "Error"), "content": {"application/json": {"schema": _REF}}}
        if code == "503":
            entry["headers"] = RETRY_AFTER
        out[code] = entry
    return out


def _json(schema: dict, description: str = "Successful Response") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ADMIN_PATHS = {
    "/v1/feedback-types": {"get": {
        "summary": "Feedback types, their granularity, default weight, model version and runtime",
        "operationId": "fgrm__feedback_types", "tags": ["Service APIs"],
        "responses": {**_errors(["401"]), "200": _json({"type": "object", "required": ["types"],
                                    "properties": {"types": {"type": "array", "items": FEEDBACK_TYPE}}})}}},
    "/v1/profiles": {"get": {
        "summary": "Named weight profiles (complete over the feedback types)",
        "operationId": "fgrm__profiles", "tags": ["Service APIs"],
        "responses": {**_errors(["401"]), "200": _json({"type": "object", "required": ["profiles"],
                                    "properties": {"profiles": {"type": "object",
                                                                "additionalProperties": WEIGHTS}}})}}},
    "/v1/profiles/{name}": {"put": {
        "summary": "Create or replace a weight profile (Authorization: Bearer <admin token> when one is set)",
        "operationId": "fgrm__put_profile", "tags": ["Service APIs"],
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["weights"], "properties": {"weights": WEIGHTS}}}}},
        "responses": {"200": _json({"type": "object", "required": ["name", "weights"],
                                    "properties": {"name": {"type": "string"}, "weights": WEIGHTS}}),
                      "401": {"description": "Missing or wrong admin token",
                              "content": {"application/json": {"schema": _REF}}},
                      "403": {"description": "Profile writes are disabled: the server has no admin token",
                              "content": {"application/json": {"schema": _REF}}},
                      **_errors(["400", "413", "415", "500"])}}},
}


def _nullable_defaults(schema) -> None:
    """Properties whose default is null accept null: say so (pydantic/BentoML drop it)."""
    if isinstance(schema, dict):
        for prop in (schema.get("properties") or {}).values():
            if isinstance(prop, dict) and "default" in prop and prop["default"] is None and "anyOf" not in prop:
                inner = {k: v for k, v in prop.items() if k not in ("default", "title", "description")}
                for k in list(inner):
                    prop.pop(k)
                prop["anyOf"] = [inner, {"type": "null"}]
        for value in schema.values():
            _nullable_defaults(value)
    elif isinstance(schema, list):
        for value in schema:
            _nullable_defaults(value)


def _restrict(schema, names: list[str], limits: dict) -> None:
    """What one field's own rules are (cross-field ones, such as offsets inside the response,
    are beyond JSON Schema and stay in the engine): weight maps and mix components are keyed by
    the configured feedback types, weights are >= 0, and the request limits of Settings."""
    if isinstance(schema, dict):
        props = schema.get("properties") or {}
        for key, prop in props.items():
            if not isinstance(prop, dict):
                continue
            for target in [prop, *prop.get("anyOf", [])]:
                if target.get("type") != "object" or "additionalProperties" not in target:
                    continue
                if key == "weights":
                    target.pop("additionalProperties")
                    target["properties"] = {n: {"type": "number", "minimum": 0} for n in names}
                    target["additionalProperties"] = False
                elif key == "types" and "$ref" in (target.get("additionalProperties") or {}):
                    value = target.pop("additionalProperties")
                    target["properties"] = {n: dict(value) for n in names}
                    target["additionalProperties"] = False
            if key in limits and prop.get("type") in ("array", "string"):
                prop["maxItems" if prop["type"] == "array" else "maxLength"] = limits[key]
        for value in schema.values():
            _restrict(value, names, limits)
    elif isinstance(schema, list):
        for value in schema:
            _restrict(value, names, limits)


def request_limits(settings) -> dict:
    """Per-field limits of Settings, by the property names they apply to."""
    return {"items": settings.max_items_per_request, "response": settings.max_response_chars,
            "question": settings.max_question_chars, "passages": settings.max_passages,
            "reference": settings.max_reference_chars}


def feedback_type_names(settings) -> list[str]:
    """The configured feedback types' names (the TOML only: no model is loaded for this)."""
    from models.config import load_feedback_types

    return [t.name for t in load_feedback_types(settings.feedback_types)]


def patch(doc: dict, version: str, type_names: list[str] | None = None, limits: dict | None = None) -> dict:
    """`doc` (BentoML's generated document) corrected to what the service does."""
    doc = copy.deepcopy(doc)
    doc["info"] = {"title": "fgrm", "version": version,
                   "description": "Fine-grained reward serving (Wu et al. 2023): per-segment rewards per "
                                  "feedback type, mixed by weights. Wire format: docs/ARCHITECTURE.md."}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ERROR_BODY
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    for path, ops in doc.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for op in ops.values():
            if "requestBody" in op:
                op["requestBody"]["required"] = True
                _nullable_defaults(op["requestBody"])
                for media in op["requestBody"].get("content", {}).values():  # unknown fields are refused
                    media.get("schema", {}).setdefault("additionalProperties", False)
            responses = op.setdefault("responses", {})
            responses.pop("404", None)  # BentoML's generic entry: these routes exist
            responses.update(_errors(["400", "401", "408", "413", "415", "500", "503"]))
            op.setdefault("parameters", []).append(TIMEOUT_PARAMETER)
    _nullable_defaults(schemas)
    doc["paths"].update(copy.deepcopy(ADMIN_PATHS))
    if type_names:
        _restrict(doc, type_names, limits or {})
    return doc


@lru_cache(maxsize=1)
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fgrm")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class OpenApiMiddleware:
    """Serves `patch(BentoML's document)` at /docs.json."""

    def __init__(self, app, type_names: list[str] | None = None, limits: dict | None = None):
        self.app, self.type_names, self.limits = app, type_names, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != DOCS_PATH or scope.get("method") != "GET":
            return await self.app(scope, receive, send)
        state: dict = {"body": b""}

        async def capture(message):
            if message["type"] == "http.response.start":
                state["start"] = message
                return None
            state["body"] += message.get("body", b"")
            if message.get("more_body"):
                return None
            start = state["start"]
            if start["status"] != 200:
                await send(start)
                return await send({"type": "http.response.body", "body": state["body"]})
            doc = patch(json.loads(state["body"]), package_version(), self.type_names, self.limits)
            body = json.dumps(doc).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            return await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, capture)
