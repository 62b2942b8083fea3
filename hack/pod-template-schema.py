#!/usr/bin/env python3
"""Render the Kubernetes types of spec.podTemplate into the CRD, from the apiserver's OpenAPI.

The pool's Pod template takes a few core/v1 types as they are (Affinity, Toleration,
TopologySpreadConstraint, EnvVar, EnvFromSource, VolumeMount, and the volume sources a CA
bundle needs). Copying them by hand would drift; this script inlines them from the OpenAPI v3
document the pinned kube-apiserver serves (`kubectl get --raw /openapi/v3/api/v1`), as
structural schemas: $refs resolved, no defaults (the Deployment's own defaulting applies), no
list-map markers (their keys are not all required upstream). A Quantity (emptyDir.sizeLimit,
a resourceFieldRef's divisor) is rendered as spec.resources' are: untyped, since a structural
schema cannot type "a string or a number" and x-kubernetes-int-or-string refuses 0.5 (a Pod
takes it), with a description of the forms; the admission policy
crds/finexworkerpools-quantities-policy.yaml judges the values. The hand-written rules (CEL,
limits) stay in crds/finexworkerpools.yaml; only the block between the markers
`# BEGIN generated: <name>` and `# END generated: <name>` is rewritten.

    python hack/pod-template-schema.py OPENAPI.json           # rewrite the blocks
    python hack/pod-template-schema.py OPENAPI.json --check   # exit 1 when a block differs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "crds" / "finexworkerpools.yaml"
CORE = "io.k8s.api.core.v1."

#: Block name -> the OpenAPI type rendered there (the array's items for a list field).
BLOCKS = {
    "affinity": CORE + "Affinity",
    "toleration": CORE + "Toleration",
    "topologySpreadConstraint": CORE + "TopologySpreadConstraint",
    "envVar": CORE + "EnvVar",
    "envFromSource": CORE + "EnvFromSource",
    "volumeMount": CORE + "VolumeMount",
    "secretVolumeSource": CORE + "SecretVolumeSource",
    "configMapVolumeSource": CORE + "ConfigMapVolumeSource",
    "projectedVolumeSource": CORE + "ProjectedVolumeSource",
    "emptyDirVolumeSource": CORE + "EmptyDirVolumeSource",
}
KEEP = {"type", "format", "description", "properties", "items", "required", "enum", "maxLength"}
MARKER = re.compile(r"^(?P<indent> *)# BEGIN generated: (?P<name>\w+)\n", re.M)


#: What a Quantity field's description adds to upstream's: the forms it takes, and who checks.
QUANTITY_FORMS = (
    'Written as a Pod takes it: a Kubernetes quantity as a string ("1Gi", "500M", "1m")'
    " or a YAML number (1073741824, 2). The admission policy finexworkerpools-quantities.finex.io"
    " (installed with this CRD) refuses a value that is no non-negative quantity, and a size in"
    " bytes that is not whole bytes: 512m is 0.512 bytes (m is milli), write 512Mi."
)


def _quantity(node: dict[str, Any]) -> bool:
    """A resource.Quantity: a string or a number (OpenAPI v3 oneOf), or v2's format."""
    one_of = {o.get("type") for o in node.get("oneOf", ())}
    return node.get("format") == "quantity" or {"string", "number"} <= one_of


def _int_or_string(node: dict[str, Any]) -> bool:
    fmt = node.get("format")
    one_of = {o.get("type") for o in node.get("oneOf", ())}  # IntOrString: an integer or a string
    return (
        bool(node.get("x-kubernetes-int-or-string"))
        or fmt == "int-or-string"
        or ("string" in one_of and "integer" in one_of)
    )


def _resolve(node: dict[str, Any], schemas: dict[str, Any], seen: tuple[str, ...]) -> dict:
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {k: v for k, v in node.items() if k != "allOf"}
        return _resolve({**node["allOf"][0], **merged}, schemas, seen)
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            raise SystemExit(f"recursive type {name}: cannot inline it")
        target = dict(schemas[name])
        if node.get("description"):
            target["description"] = node["description"]
        return _resolve(target, schemas, (*seen, name))
    out: dict[str, Any] = {k: node[k] for k in ("description", "enum", "required") if k in node}
    if _quantity(node):  # untyped, as spec.resources' quantities: the policy judges them
        out["x-kubernetes-preserve-unknown-fields"] = True
        out["maxLength"] = 64
        upstream = node.get("description", "").rstrip()
        upstream += "" if not upstream or upstream.endswith(".") else "."
        out["description"] = f"{upstream} {QUANTITY_FORMS}".lstrip()
    elif _int_or_string(node):  # IntOrString: the apiserver's own x-kubernetes marker
        out["x-kubernetes-int-or-string"] = True
    else:
        out.update({k: node[k] for k in ("type", "format") if k in node})
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {
            k: _resolve(v, schemas, seen) for k, v in sorted(node["properties"].items())
        }
    if "items" in node:
        out["items"] = _resolve(node["items"], schemas, seen)
    if "additionalProperties" in node:
        out["additionalProperties"] = _resolve(node["additionalProperties"], schemas, seen)
    if (
        out.get("type") == "object"
        and not out.get("properties")
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return {
        k: v
        for k, v in out.items()
        if k in KEEP or k.startswith("x-") or k == "additionalProperties"
    }


class _NoAliases(yaml.SafeDumper):
    """Every node written out in full: the CRD's own anchors must stay the only ones."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Upstream descriptions with line breaks (enum lists) as readable literal blocks."""
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_NoAliases.add_representer(str, _text)


def render(name: str, schemas: dict[str, Any], indent: str) -> str:
    schema = _resolve({"$ref": BLOCKS[name]}, schemas, ())
    schema.pop("description", None)  # the field's own description is hand-written
    text = yaml.dump(schema, Dumper=_NoAliases, sort_keys=True, width=100)
    return "".join(f"{indent}{line}\n" if line else "\n" for line in text.splitlines())


def rewrite(crd_text: str, schemas: dict[str, Any]) -> str:
    out, pos = [], 0
    for m in MARKER.finditer(crd_text):
        end = f"{m['indent']}# END generated: {m['name']}\n"
        stop = crd_text.index(end, m.end())
        out += [crd_text[pos : m.end()], render(m["name"], schemas, m["indent"]), end]
        pos = stop + len(end)
    out.append(crd_text[pos:])
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("openapi", type=Path, help="the document of /openapi/v3/api/v1")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    schemas = json.loads(args.openapi.read_text())["components"]["schemas"]
    before = CRD.read_text()
    after = rewrite(before, schemas)
    if args.check:
        if after != before:
            print(
                f"{CRD}: a generated block differs; run hack/pod-template-schema.py",
                file=sys.stderr,
            )
            return 1
        return 0
    CRD.write_text(after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
