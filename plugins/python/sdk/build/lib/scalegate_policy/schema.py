"""The JSON Schema subset the SDKs check params against (the keywords
policies' schemas use: type, enum, const, bounds, lengths, items, properties,
required, additionalProperties, patternProperties, propertyNames, allOf,
anyOf, oneOf, $ref into the document). Messages match the Rust SDK's."""

import json
import re


def _num(x):
    """A number as Rust prints an f64: integral values without a fraction."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _short(value):
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text[:40] + "…" if len(text) > 40 else text


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_type(v, name):
    return {
        "null": v is None,
        "boolean": isinstance(v, bool),
        "object": isinstance(v, dict),
        "array": isinstance(v, list),
        "string": isinstance(v, str),
        "number": _is_number(v),
        "integer": isinstance(v, int) and not isinstance(v, bool),
    }.get(name, True)


def _describe(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if _is_number(v):
        return f"the number {_short(v)}"
    if isinstance(v, str):
        return f"the string {_short(v)}"
    if isinstance(v, list):
        return "an array"
    return "an object"


def _matches(pattern, text):
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def check(root, schema, value, at):
    """None when ``value`` satisfies ``schema``, else a message naming where and why."""
    if not isinstance(schema, dict):
        return f"{at}: not allowed" if schema is False else None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = root
        if ref.startswith("#/"):
            for key in ref[2:].split("/"):
                target = target.get(key) if isinstance(target, dict) else None
        if target is None:
            return f"{at}: schema reference {ref} does not resolve"
        problem = check(root, target, value, at)
        if problem:
            return problem
    types = schema.get("type")
    allowed = [types] if isinstance(types, str) else [t for t in (types or []) if isinstance(t, str)]
    if allowed and not any(_is_type(value, t) for t in allowed):
        return f"{at}: expected {' or '.join(allowed)}, got {_describe(value)}"
    if "enum" in schema and isinstance(schema["enum"], list) and value not in schema["enum"]:
        options = ", ".join(json.dumps(o, separators=(",", ":")) for o in schema["enum"])
        return f"{at}: {_short(value)} is not one of {options}"
    if "const" in schema and schema["const"] != value:
        return f"{at}: must be {json.dumps(schema['const'], separators=(',', ':'))}"
    if _is_number(value):
        for key, rule, fails in (
            ("minimum", ">=", lambda b: value < b),
            ("maximum", "<=", lambda b: value > b),
            ("exclusiveMinimum", ">", lambda b: value <= b),
            ("exclusiveMaximum", "<", lambda b: value >= b),
        ):
            bound = schema.get(key)
            if _is_number(bound) and fails(bound):
                return f"{at}: must be {rule} {_num(bound)}, got {_num(value)}"
    if isinstance(value, str):
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not _matches(pattern, value):
            return f"{at}: {_short(value)} does not match {pattern}"
        if _is_number(schema.get("minLength")) and len(value) < schema["minLength"]:
            return f"{at}: shorter than {_num(schema['minLength'])} characters"
        if _is_number(schema.get("maxLength")) and len(value) > schema["maxLength"]:
            return f"{at}: longer than {_num(schema['maxLength'])} characters"
    if isinstance(value, list):
        if _is_number(schema.get("minItems")) and len(value) < schema["minItems"]:
            return f"{at}: needs at least {_num(schema['minItems'])} items, has {len(value)}"
        if _is_number(schema.get("maxItems")) and len(value) > schema["maxItems"]:
            return f"{at}: takes at most {_num(schema['maxItems'])} items, has {len(value)}"
        if "items" in schema:
            for i, v in enumerate(value):
                problem = check(root, schema["items"], v, f"{at}[{i}]")
                if problem:
                    return problem
    if isinstance(value, dict):
        problem = _object(root, schema, value, at)
        if problem:
            return problem
    for sub in schema.get("allOf", []):
        problem = check(root, sub, value, at)
        if problem:
            return problem
    for keyword in ("anyOf", "oneOf"):
        branches = schema.get(keyword)
        if isinstance(branches, list):
            results = [check(root, b, value, at) for b in branches]
            passed = sum(1 for r in results if r is None)
            if passed == 0:
                errors = [r for r in results if r]
                wrong_type = f"{at}: expected "
                reason = next((e for e in errors if not e.startswith(wrong_type)), errors[0] if errors else None)
                return reason or f"{at}: matches no allowed form"
            if keyword == "oneOf" and passed > 1:
                return f"{at}: matches more than one allowed form"
    return None


def _object(root, schema, fields, at):
    for name in schema.get("required", []):
        if name not in fields:
            return f"{at}: missing field `{name}`"
    if _is_number(schema.get("minProperties")) and len(fields) < schema["minProperties"]:
        return f"{at}: needs at least {_num(schema['minProperties'])} entries, has {len(fields)}"
    if _is_number(schema.get("maxProperties")) and len(fields) > schema["maxProperties"]:
        return f"{at}: takes at most {_num(schema['maxProperties'])} entries, has {len(fields)}"
    properties = schema.get("properties") or {}
    patterns = schema.get("patternProperties")
    for name, v in fields.items():
        if "propertyNames" in schema:
            problem = check(root, schema["propertyNames"], name, f"{at} key {json.dumps(name)}")
            if problem:
                return problem
        path = f"{at}.{name}"
        by_pattern = [s for p, s in patterns.items() if _matches(p, name)] if isinstance(patterns, dict) else []
        for sub in by_pattern:
            problem = check(root, sub, v, path)
            if problem:
                return problem
        if name in properties:
            problem = check(root, properties[name], v, path)
            if problem:
                return problem
        elif by_pattern:
            continue
        else:
            extra = schema.get("additionalProperties")
            if extra is False:
                known = ", ".join(properties)
                return f"{at}: unknown field `{name}`" + (f", expected one of: {known}" if known else "")
            if isinstance(extra, dict):
                problem = check(root, extra, v, path)
                if problem:
                    return problem
    return None
