"""The manifest JSON Schema: loading it, validating documents, and wording its errors.

The schema ships inside the package (``reconciler/schemas/manifest.schema.json``). jsonschema's
messages echo values and speak of schema keywords; here each error becomes one ``Diagnostic``
in plain words, at the line and column of the offending node, saying what to do. Values are
shown only when short and never when they could be key material.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.keys``, ``reconciler.kinds``,
``reconciler.yamlsafe``, jsonschema (lazily).
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from importlib import resources
from typing import Any

from reconciler.errors import Diagnostic
from reconciler.keys import looks_like_private_key
from reconciler.model import NAME_PATTERN
from reconciler.yamlsafe import NodePath, YamlDocument

SCHEMA_ID = "https://reconciler.dev/schemas/manifest.schema.json"
SOURCE_KEYS = ("generate", "public_key", "public_key_file")
NAME_RE = re.compile(NAME_PATTERN)

_CREDENTIAL_KEYS = frozenset({
    "ak", "sk", "access_key", "secret_key", "accesskey", "secretkey", "access_key_id",
    "secret_access_key", "password", "token", "security_token", "credentials", "secret",
})
_TYPE_WORDS = {
    "string": "a string", "object": "a mapping", "array": "a list", "boolean": "true or false",
    "integer": "a whole number", "number": "a number", "null": "nothing",
}
_PATTERN_HINTS = {
    "name": 'is not a valid name: use 1-64 letters, digits, "_" or "-"',
    "rotate_after": "is not a valid duration: use a whole number and h, d or w, e.g. 90d",
    "user_id": 'is not a valid user id: use 1-64 letters, digits, "_" or "-"',
    "project_id": 'is not a valid project id: use 1-64 letters, digits, "_" or "-"',
    "region": "is not a valid region: use lower-case words joined by -, e.g. cn-north-4",
    "endpoint": "is not a valid endpoint: use a URL such as https://ecs.cn-north-4.myhuaweicloud.com",
    "to": 'is not a key pair address: give a name (web), an address (keypair.web), or an '
          'address in one target (keypair.web["prod-cn-north-4"])',
}

_TARGET_HINTS = {
    "name": 'is not a valid target name: use 1-63 lower-case letters, digits and "-", '
            "starting with a letter or digit, e.g. prod-cn-north-4",
    "ecs": _PATTERN_HINTS["endpoint"], "kms": _PATTERN_HINTS["endpoint"],
    "iam": _PATTERN_HINTS["endpoint"], "sts": _PATTERN_HINTS["endpoint"],
    "obs": _PATTERN_HINTS["endpoint"],
}


# the fields of a target's credentials block (``targets[i].credentials``)
_CREDENTIAL_HINTS = {
    "profile": "is not a profile name: the SDK's profile file names its sections basic or "
               'basic followed by lower-case letters, digits, ".", "_" or "-", e.g. '
               "basic-partner",
    "name": 'is not a valid agency name: use 1-64 letters, digits, ".", "_", "-" and inner '
            "spaces, as the agency is named in the account that owns it",
    "domain_name": 'is not a valid account name: use 1-64 letters, digits, ".", "_" or "-"',
    "domain_id": 'is not a valid account id: use 1-64 letters, digits, "_" or "-"',
    "duration": "is not a valid duration: use whole numbers with h, m or s, e.g. 1h or 2h30m "
                "(15m to 24h)",
}
_PATTERNED = frozenset({*_PATTERN_HINTS, *_CREDENTIAL_HINTS})
CREDENTIALS_FORMS = ("give an object, never a secret: credentials: {profile: basic-NAME} for a "
                     "section of the SDK's profile file, and/or credentials: {agency: {name: "
                     "AGENCY, domain_name: ACCOUNT}} to assume an agency; without credentials "
                     "the target uses the environment's credentials")


def schema_text() -> str:
    """The schema file as shipped, for ``reconciler schema``."""
    return (resources.files("reconciler") / "schemas" / "manifest.schema.json").read_text("utf-8")


@functools.cache
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text())
    return schema


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with local ``$ref``s replaced by their targets (ours has no cycles).

    Resolving a reference costs more than the rest of validating a key pair; done once here,
    it keeps validating thousands of key pairs fast.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref.rsplit("/", 1)[1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@functools.cache
def _validator(definition: str = "") -> Any:
    """The compiled validator of the whole document, or of one of its ``$defs``."""
    from jsonschema import Draft202012Validator

    schema = load_schema()
    defs = schema.get("$defs", {})
    return Draft202012Validator(_inline_refs(defs[definition] if definition else schema, defs))


def format_path(path: NodePath) -> str:
    """``("keypairs", 3, "name")`` -> ``keypairs[3].name``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def show(value: object) -> str:
    """A short, safe rendering of a value for a message (never key material)."""
    if isinstance(value, str):
        if looks_like_private_key(value):
            return "(a private key, not shown)"
        text = value if len(value) <= 40 else value[:37] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)[:40]
    return "a list" if isinstance(value, list) else "a mapping"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "nothing (null)"
    return "a list" if isinstance(value, list) else "a mapping"


def schema_diagnostics(doc: YamlDocument) -> list[Diagnostic]:
    """Every schema violation of one document, in plain words.

    Key pairs are validated one by one, and an item known valid by its shape (its fields with
    the name and public key stood in for by placeholders) is not validated again: thousands of
    ``generate: ed25519`` entries cost one validation.
    """
    from reconciler.kinds import REGISTRY

    value = doc.value
    out = _line_breaks(value, doc, ())
    if not isinstance(value, dict):
        return out + _errors(_validator(), value, doc, ())
    sections = {k.section: k.schema_definition for k in REGISTRY.values()
                if isinstance(value.get(k.section), list)}
    out += _errors(_validator(), {**value, **{s: [] for s in sections}}, doc, ())
    for section, definition in sections.items():
        out += _section_errors(value[section], section, definition, doc)
    return out


def _section_errors(items: list[Any], section: str, definition: str,
                    doc: YamlDocument) -> list[Diagnostic]:
    """A kind's items, each against its kind's schema fragment (``$defs``)."""
    out: list[Diagnostic] = []
    valid_shapes: set[str] = set()
    for index, item in enumerate(items):
        shape = _shape(item)
        if shape is not None and shape in valid_shapes:
            continue
        found = _errors(_validator(definition), item, doc, (section, index))
        if not found and shape is not None:
            valid_shapes.add(shape)
        out.extend(found)
    return out


def _line_breaks(value: object, doc: YamlDocument, path: NodePath) -> list[Diagnostic]:
    """Strings with a pattern that end in a line break.

    jsonschema matches patterns with Python's ``re.search``, where ``$`` also matches before a
    final newline; JSON Schema (ECMA 262) does not. A YAML block scalar (``|``) adds one.
    """
    out: list[Diagnostic] = []
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in _PATTERNED and isinstance(sub, str) and sub.endswith("\n"):
                out.append(_diag(doc, (*path, key), f"{show(sub.rstrip())} ends with a line "
                                 "break", detail="write it on one line, without `|` or `>`"))
            elif isinstance(sub, dict | list) and key in ("provider", "keypairs", "targets",
                                                          "endpoints", "credentials", "agency"):
                out.extend(_line_breaks(sub, doc, (*path, key)))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            out.extend(_line_breaks(sub, doc, (*path, index)))
    return out


_PLACEHOLDERS = {"name": "n", "public_key": "k", "public_key_file": "f"}


def _shape(item: object) -> str | None:
    """What decides an item's validity, with values the schema only bounds replaced."""
    if not isinstance(item, dict):
        return None
    shaped = dict(item)
    name = shaped.get("name")
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        shaped["name"] = _PLACEHOLDERS["name"]
    for key in ("public_key", "public_key_file"):
        text = shaped.get(key)
        if isinstance(text, str) and 0 < len(text) <= 4096:
            shaped[key] = _PLACEHOLDERS[key]
    try:
        return json.dumps(shaped, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def _errors(validator: Any, value: object, doc: YamlDocument,
            prefix: NodePath) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for error in validator.iter_errors(value):
        out.extend(_translate(error, doc, prefix))
    return out


def _diag(doc: YamlDocument, path: NodePath, summary: str, *, key: bool = False,
          detail: str = "") -> Diagnostic:
    return Diagnostic(summary, doc.location(path, key=key), path=format_path(path), detail=detail)


def _translate(error: Any, doc: YamlDocument, prefix: NodePath) -> list[Diagnostic]:
    path: NodePath = (*prefix, *error.absolute_path)
    validator = error.validator
    instance = error.instance
    if validator == "additionalProperties":
        return _unknown_keys(error, doc, path)
    if validator == "required":
        missing = [k for k in error.validator_value if k not in instance]
        return [_diag(doc, path, f'missing required key "{k}"', detail=_required_hint(k))
                for k in missing]
    if validator == "type":
        want = _TYPE_WORDS.get(str(error.validator_value), str(error.validator_value))
        if len(path) == 3 and path[0] == "targets" and path[2] == "credentials":
            # the string form (a bare source name) was never accepted: say what replaces it
            return [_diag(doc, path, f"expected {want}, got {_kind(instance)}",
                          detail=CREDENTIALS_FORMS)]
        return [_diag(doc, path, f"expected {want}, got {_kind(instance)}")]
    if validator in ("enum", "const"):
        choices = error.validator_value if validator == "enum" else [error.validator_value]
        allowed = ", ".join(str(c) for c in choices)
        return [_diag(doc, path, f"{show(instance)} is not supported; use "
                                 f"{'one of ' if len(choices) > 1 else ''}{allowed}")]
    if validator == "pattern":
        field = str(path[-1]) if path else ""
        hint = _PATTERN_HINTS.get(field, f"does not match {error.validator_value}")
        if path and path[0] == "targets":
            hints = _CREDENTIAL_HINTS if "credentials" in path else _TARGET_HINTS
            hint = hints.get(field, hint)
        if len(path) > 2 and path[-2] == "targets":  # a key pair's list of target names
            hint = _TARGET_HINTS["name"]
        return [_diag(doc, path, f"{show(instance)} {hint}")]
    if validator in ("maxLength", "minLength"):
        return [_diag(doc, path, _length_message(validator, error, instance, path))]
    if validator == "not":
        return _not_message(error, doc, path)
    if validator == "anyOf" and path and path[-1] == "encryption":
        return [_diag(doc, path, "encryption type kms needs kms_key_name or kms_key_id",
                      detail="name the KMS key, e.g. kms_key_name: ops-kms")]
    if validator == "anyOf" and path and path[-1] == "servers":
        return [_diag(doc, path, "servers must be a list of ECS server ids or names (1-64 "
                      "printable characters each, each once), or a map from target name to "
                      "such a list", detail="e.g. `servers: [web-1, web-2]`, or `servers: "
                      "{prod: [web-1]}` for a key pair in several targets")]
    if validator == "anyOf" and "then" in error.schema_path:  # type: x509, no certificate
        return [_x509_source(instance, doc, path)]
    return [_diag(doc, path, f"does not satisfy the schema rule {validator!r}",
                  detail="see `reconciler schema` for what is allowed here")]


def _required_hint(key: str) -> str:
    return {
        "name": "every key pair needs a name",
        "apiVersion": "start each document with apiVersion: reconciler/v1",
        "kind": "start each document with kind: KeyPairs",
        "encryption": "say how the cloud encrypts the key: encryption: {type: default}",
    }.get(key, "")


def _length_message(validator: str, error: Any, instance: object, path: NodePath) -> str:
    size = len(instance) if isinstance(instance, str) else 0
    if validator == "minLength":
        return "must not be empty"
    return f"is {size} characters long; at most {error.validator_value} are allowed"


def _unknown_keys(error: Any, doc: YamlDocument, path: NodePath) -> list[Diagnostic]:
    allowed = list(error.schema.get("properties", {}))
    out = []
    for key in error.instance:
        if key in allowed:
            continue
        lowered = str(key).lower()
        if lowered in _CREDENTIAL_KEYS:
            detail = ("credentials never belong in a manifest: export HUAWEICLOUD_SDK_AK and "
                      "HUAWEICLOUD_SDK_SK (or HW_ACCESS_KEY and HW_SECRET_KEY) instead")
        elif lowered in ("passphrase", "key", "key_file", "data_key", "plain_text"):
            detail = ("no secret belongs in a manifest: the state's passphrase comes from "
                      "RECONCILER_PASSPHRASE, its key file from RECONCILER_KEY_FILE; a KMS key "
                      "is named by kms.key_id")
        elif "private" in lowered:
            detail = ("private keys never appear in a manifest; to hand one to the cloud, "
                      "use key_protection.private_key_file")
        else:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            guess = f'did you mean "{close[0]}"? ' if close else ""
            detail = f"{guess}allowed here: {', '.join(allowed)}"
        shown = str(key) if len(str(key)) <= 40 else str(key)[:37] + "..."
        out.append(_diag(doc, (*path, key), f'unknown key "{shown}"', key=True, detail=detail))
    return out


def _x509_source(instance: object, doc: YamlDocument, path: NodePath) -> Diagnostic:
    """``type: x509`` without a certificate: neither here nor the cloud can generate one."""
    fix = ("give its PEM certificate in public_key or public_key_file (e.g. public_key_file: "
           "certs/NAME.pem), or drop `type: x509` for an ssh key pair")
    if isinstance(instance, dict) and "generate" in instance:
        return _diag(doc, (*path, "generate"), "a type x509 key pair cannot be generated here",
                     key=True, detail=fix)
    return _diag(doc, (*path, "type"), "a type x509 key pair needs its certificate: the cloud "
                 "generates ssh key pairs only", key=True, detail=fix)


def _not_message(error: Any, doc: YamlDocument, path: NodePath) -> list[Diagnostic]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    present = [k for k in instance if k in SOURCE_KEYS]
    second = present[1] if len(present) > 1 else (present[0] if present else "")
    found = " and ".join(present)
    return [_diag(doc, (*path, second) if second else path,
                  f"use at most one of generate, public_key and public_key_file (found {found})",
                  key=bool(second),
                  detail="none of them means the cloud generates the key pair")]
