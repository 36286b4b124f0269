#!/usr/bin/env python3
"""Sanity check of the custom connector files, without a JSON-schema library.

Checks that apiDefinition.swagger.json and apiProperties.json are JSON, that the
definition is Swagger 2.0 with a host and the API-key security, that every
operation has a unique operationId, a summary, a description and responses
(with a 202 + Location for the calls the relay may answer asynchronously), that
every parameter and every body property carries x-ms-summary and description,
that path templates and path parameters agree, that every $ref resolves, that
every text a user sees (summaries, descriptions, titles) is ASCII as
certification demands, and that the connection asks for the relay's host name
(`hostName`, used by the `dynamichosturl` policy) and for the API key as a
`securestring` named as the API-key security definition.

    python3 deploy/power-automate/check_connector.py
"""

import json
import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
METHODS = {"get", "put", "post", "patch", "delete", "head", "options"}
ACTIONS = {"CreateCustomer", "UpdateCustomer", "GetCustomer", "SearchCustomers", "CallFunction", "ReadTable"}


def refs(value, at="#"):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref":
                yield at, item
            else:
                yield from refs(item, f"{at}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from refs(item, f"{at}/{i}")


def resolve(doc, ref):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def properties(doc, schema, at, errors):
    if "$ref" in schema:
        schema = resolve(doc, schema["$ref"])
    for name, prop in schema.get("properties", {}).items():
        for key in ("x-ms-summary", "description"):
            if key not in prop:
                errors.append(f"{at}.{name}: no {key}")


TEXT_KEYS = {"summary", "description", "x-ms-summary", "title", "displayName", "tooltip"}


def non_ascii(value, at="#"):
    """Where a user-visible text holds a character outside ASCII."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in TEXT_KEYS and isinstance(item, str) and not item.isascii():
                yield f"{at}/{key}"
            else:
                yield from non_ascii(item, f"{at}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from non_ascii(item, f"{at}/{i}")


def connection(doc, props, errors):
    """The connection parameters and the policy that makes any relay reachable."""
    params = props.get("properties", {}).get("connectionParameters", {})
    keys = [n for n, s in doc.get("securityDefinitions", {}).items() if s.get("type") == "apiKey"]
    for name in keys:
        if params.get(name, {}).get("type") != "securestring":
            errors.append(f"apiProperties.json: API key {name} is not a securestring connection parameter")
    host = params.get("hostName", {})
    if host.get("type") != "string" or host.get("uiDefinition", {}).get("constraints", {}).get("required") != "true":
        errors.append("apiProperties.json: no required string connection parameter hostName")
    policies = props.get("properties", {}).get("policyTemplateInstances", [])
    templates = [
        p.get("parameters", {}).get("x-ms-apimTemplateParameter.urlTemplate", "")
        for p in policies
        if p.get("templateId") == "dynamichosturl"
    ]
    if templates != ["https://@connectionParameters('hostName')"]:
        errors.append(f"apiProperties.json: dynamichosturl policy from hostName expected, got {templates}")


def main():
    errors = []
    doc = json.loads((HERE / "apiDefinition.swagger.json").read_text(encoding="utf-8"))
    props = json.loads((HERE / "apiProperties.json").read_text(encoding="utf-8"))
    if doc.get("swagger") != "2.0":
        errors.append("not Swagger 2.0")
    if not doc.get("host"):
        errors.append("no host")
    schemes = doc.get("securityDefinitions", {})
    if not any(s.get("type") == "apiKey" and s.get("in") == "header" for s in schemes.values()):
        errors.append("no API key header security definition")
    connection(doc, props, errors)
    for name, text in (("apiDefinition.swagger.json", doc), ("apiProperties.json", props)):
        for at in non_ascii(text):
            errors.append(f"{name}: {at} is not ASCII")
    for at, ref in refs(doc):
        try:
            resolve(doc, ref)
        except (KeyError, TypeError):
            errors.append(f"{at}: $ref {ref} does not resolve")
    seen = set()
    for path, item in doc["paths"].items():
        templated = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            op_id = op.get("operationId")
            if not op_id:
                errors.append(f"{where}: no operationId")
            elif op_id in seen:
                errors.append(f"{where}: duplicate operationId {op_id}")
            seen.add(op_id)
            for key in ("summary", "description"):
                if not op.get(key):
                    errors.append(f"{where}: no {key}")
            responses = op.get("responses") or {}
            if not responses:
                errors.append(f"{where}: no responses")
            if op_id in ACTIONS and "Location" not in responses.get("202", {}).get("headers", {}):
                errors.append(f"{where}: no 202 with Location")
            declared = set()
            for p in op.get("parameters", []):
                name = p.get("name")
                for key in ("x-ms-summary", "description"):
                    if key not in p:
                        errors.append(f"{where}: parameter {name}: no {key}")
                if p.get("in") == "path":
                    declared.add(name)
                    if not p.get("required"):
                        errors.append(f"{where}: path parameter {name} not required")
                if p.get("in") == "body":
                    properties(doc, p["schema"], f"{where} body", errors)
            if declared != templated:
                errors.append(f"{where}: path parameters {sorted(declared)} != {sorted(templated)}")
    missing = ACTIONS - seen
    if missing:
        errors.append(f"missing actions: {sorted(missing)}")
    for error in errors:
        print(error)
    print(f"{len(seen)} operations, {len(errors)} problems")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
