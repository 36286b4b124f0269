#!/usr/bin/env python3
"""Builds the connector's apiDefinition.swagger.json from the relay's OpenAPI 3.1
document (relay/src/http/openapi.json) plus overlay.json, which holds only what
the connector adds: the Swagger 2.0 frame (host placeholder, security,
x-ms-connector-metadata), which operations it offers under which operationId,
their x-ms-* extensions, labels and connector-only choices, and its definitions.

Derived from openapi.json, so a change there reaches the connector: every
operation's path and method (an operation the document lacks is an error), and
each parameter's place (`in`), `required`, type and limits (`type`, `format`,
`minLength`, `maxLength`, `pattern`, `minimum`, `maximum`, `enum`, `default`).
An overlay field of the same name wins (a connector-only choice).

    python3 deploy/power-automate/generate.py          # write the file
    python3 deploy/power-automate/generate.py --check  # exit 1 if it differs

No dependencies, no network.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
OPENAPI = HERE.parent.parent / "relay" / "src" / "http" / "openapi.json"
OVERLAY = HERE / "overlay.json"
TARGET = HERE / "apiDefinition.swagger.json"
DERIVED = ("type", "format", "minLength", "maxLength", "pattern", "minimum", "maximum", "enum", "default")


def deref(doc, node):
    """`node` with its `$ref` (within `doc`) followed."""
    while isinstance(node, dict) and "$ref" in node:
        target = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def document_parameters(doc, path, method):
    """The parameters of an operation of the OpenAPI document, by name."""
    item = doc["paths"].get(path)
    if item is None or method not in item:
        raise SystemExit(f"openapi.json has no {method.upper()} {path}")
    params = {}
    for raw in item.get("parameters", []) + item[method].get("parameters", []):
        p = deref(doc, raw)
        params[p["name"]] = p
    return params


def derive(param):
    """The Swagger 2.0 fields of an OpenAPI 3.1 parameter."""
    out = {"name": param["name"], "in": param["in"], "required": bool(param.get("required", False))}
    schema = param.get("schema", {})
    for key in DERIVED:
        if key in schema:
            value = schema[key]
            if key == "type" and isinstance(value, list):
                value = next(t for t in value if t != "null")
            out[key] = value
    return out


def build(doc, overlay):
    out = dict(overlay["frame"])
    paths = {}
    for op in overlay["operations"]:
        path, method = op["path"], op["method"]
        params = document_parameters(doc, path, method)
        built = {}
        for key, value in op["operation"].items():
            if key != "parameters":
                built[key] = value
                continue
            built["parameters"] = []
            for entry in value:
                if entry.get("in") == "body":
                    built["parameters"].append(entry)
                    continue
                name = entry["name"]
                if name not in params:
                    raise SystemExit(f"openapi.json: {method.upper()} {path} has no parameter {name}")
                merged = derive(params[name])
                merged.update(entry)
                built["parameters"].append(merged)
        paths.setdefault(path, {})[method] = built
    out["paths"] = paths
    for key, value in overlay["after_paths"].items():
        out[key] = value
    return out


def render(value):
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def main():
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    overlay = json.loads(OVERLAY.read_text(encoding="utf-8"))
    text = render(build(doc, overlay))
    if "--check" in sys.argv[1:]:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.name} differs from what generate.py builds from openapi.json and "
                  "overlay.json: run python3 deploy/power-automate/generate.py and commit the result")
            return 1
        print(f"{TARGET.name} is up to date")
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
