"""Make JSON that fits (or deliberately breaks) a JSON Schema, for the emulator's "model".

Covers what pydantic's ``model_json_schema()`` emits: objects with ``properties``/``required``,
``$ref`` into ``$defs``, ``anyOf`` (Optional fields), arrays, enums, consts, and the scalar types
with their common bounds.
"""

from __future__ import annotations

import hashlib
from typing import Any


def fill(schema: dict[str, Any], seed: str = "") -> Any:
    """A value valid against ``schema``; deterministic for a given ``seed`` (e.g. a record key)."""
    return _fill(schema, schema, seed, 0)


def _fill(node: dict[str, Any], root: dict[str, Any], seed: str, depth: int) -> Any:
    if "$ref" in node:
        return _fill(_resolve(node["$ref"], root), root, seed, depth)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][_pick(seed, len(node["enum"]))]
    for combinator in ("anyOf", "oneOf"):
        if combinator in node:
            options = [o for o in node[combinator] if o.get("type") != "null"]
            return _fill(options[0] if options else node[combinator][0], root, seed, depth)
    if "allOf" in node:
        return _fill(node["allOf"][0], root, seed, depth)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in node:
        props = node.get("properties", {})
        return {
            name: _fill(sub, root, f"{seed}.{name}", depth + 1)
            for name, sub in props.items()
            if name in node.get("required", []) or depth < 3
        }
    if kind == "array":
        count = max(node.get("minItems", 1 if depth < 2 else 0), 0)
        count = min(count, node.get("maxItems", count))
        items = node.get("items", {})
        return [_fill(items, root, f"{seed}[{i}]", depth + 1) for i in range(count)]
    if kind == "integer":
        low = node.get("minimum", node.get("exclusiveMinimum", -1) + 1)
        high = node.get("maximum", low + 100)
        return low + _pick(seed, max(high - low, 0) + 1)
    if kind == "number":
        return float(node.get("minimum", 0)) + 0.5
    if kind == "boolean":
        return _pick(seed, 2) == 1
    if kind == "null":
        return None
    if kind == "string":
        text = f"text for {seed}" if seed else "text"
        lo, hi = node.get("minLength", 0), node.get("maxLength")
        if len(text) < lo:
            text = text.ljust(lo, "x")
        return text[:hi] if hi is not None else text
    return f"value for {seed}"


def break_(schema: dict[str, Any], seed: str = "") -> Any:
    """JSON that parses but does not validate: a required field missing, or the wrong type."""
    root = schema
    node = _resolve(schema["$ref"], root) if "$ref" in schema else schema
    value = _fill(node, root, seed, 0)
    if isinstance(value, dict):
        required = node.get("required", [])
        if required:
            value.pop(required[0], None)
            return value
        value["__unexpected__"] = True
        return value
    return {"not": "what the schema asked for"}


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported: {ref}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _pick(seed: str, n: int) -> int:
    if n <= 1:
        return 0
    return int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=4).digest(), "big") % n
