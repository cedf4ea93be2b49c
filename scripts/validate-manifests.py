#!/usr/bin/env python3
"""Validate Kubernetes manifests strictly, custom resources included.

    scripts/validate-manifests.py [--crds DIR] FILE...

Built-in kinds are checked by kubernetes-validate (--strict: unknown fields
are errors). A kind it has no schema for is checked against the
openAPIV3Schema of a CustomResourceDefinition in DIR (default
host/tests/crds: KEDA's and the Prometheus operator's, vendored), made
strict the same way: an object that lists its properties rejects any other,
unless it says x-kubernetes-preserve-unknown-fields. A document of a kind
found in neither is an error, not a warning: nothing passes unchecked.
CEL rules (x-kubernetes-validations) are not evaluated.
"""

import argparse
import copy
import os
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv


def strict(schema):
    """The CRD's structural schema as a JSON Schema that refuses unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable") and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        if "properties" in node and "additionalProperties" not in node \
                and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        for value in node.values():
            walk(value)

    walk(schema)
    return schema


def load_crds(directory):
    """(apiVersion, kind) -> validator, for every served version of every CRD in directory."""
    validators = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(directory, name)) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    schema = strict(version["schema"]["openAPIV3Schema"])
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--crds", default=os.path.join(here, "..", "host", "tests", "crds"))
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    crds = load_crds(args.crds)
    version = kv.latest_version()
    failures = 0
    counts = {"built-in": 0, "custom": 0}
    for filename in args.files:
        for doc in kv.resources_from_file(filename):
            if not doc:
                continue
            what = f"{filename}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                counts["built-in"] += 1
                continue
            except kv.SchemaNotFoundError:
                pass
            except kv.ValidationError as e:
                print(f"ERROR {what}: {e.message} at {'.'.join(str(p) for p in e.path)}")
                failures += 1
                continue
            validator = crds.get((doc.get("apiVersion"), doc.get("kind")))
            if validator is None:
                print(f"ERROR {what}: no schema for {doc.get('apiVersion')} {doc.get('kind')} "
                      f"(neither Kubernetes {version} nor a CRD in {args.crds})")
                failures += 1
                continue
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
            for e in errors:
                print(f"ERROR {what}: {e.message} at {'.'.join(str(p) for p in e.path) or '(top)'}")
            failures += len(errors)
            counts["custom"] += 1
    print(f"{counts['built-in']} built-in and {counts['custom']} custom resources checked, {failures} errors")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
