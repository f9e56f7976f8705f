"""The state document codec: round trips, refusals, migrations."""

from __future__ import annotations

import dataclasses
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_state_support import at, entry

from reconciler.address import keypair_address
from reconciler.errors import StateCorruptError, StateTamperedError
from reconciler.model import (
    Api,
    DeliveryRecord,
    Deposed,
    Encryption,
    EntryStatus,
    KeyProtection,
    KeySource,
    SealedSecret,
    State,
    StateKeyPair,
)
from reconciler.state import codec
from reconciler.state.codec import (
    FORMAT_VERSION,
    KMS_FORMAT_VERSION,
    MIGRATIONS,
    StateDocument,
    checksum,
    decode_document,
    decode_journal,
    encode_document,
    encode_journal_line,
    entry_to_dict,
    verify_document,
    verify_journal,
)
from reconciler.state.crypto import KeyBlock, StateKey, key_id

_RAW = bytes(range(32))
KEY = StateKey(KeyBlock(id=key_id(_RAW)), _RAW)
OTHER = StateKey(KeyBlock(id=key_id(b"\x01" * 32)), b"\x01" * 32)

names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
text = st.text(max_size=40)
opt_text = st.none() | text
protection = st.none() | st.builds(
    KeyProtection,
    encryption=st.builds(Encryption, type=st.sampled_from(["default", "kms"]),
                         kms_key_name=opt_text, kms_key_id=opt_text),
    private_key_file=opt_text,
)
sealed = st.none() | st.builds(SealedSecret, envelope=st.text(string.printable, max_size=80))


deliveries = st.builds(
    DeliveryRecord, sink=text, target=text, fingerprint=text, delivered=text,
    version_id=opt_text, digest=opt_text, path=opt_text,
    recipients=st.lists(text, max_size=2).map(tuple))


@st.composite
def deposed_of(draw: st.DrawFn, name: str, generation: int) -> Deposed | None:
    """None, or a previous generation of key pair ``name`` (its cloud name is one, never
    the current generation's)."""
    if not draw(st.booleans()) or (len(name) > 60 and generation == 0):
        return None
    n = draw(st.integers(0, 99).filter(lambda n: n != generation)) if len(name) <= 60 else 0
    return Deposed(cloud_name=name if n == 0 else f"{name}-g{n}", public_key=draw(text),
                   fingerprint_md5=draw(text), fingerprint_sha256=draw(text),
                   private_key=draw(sealed))


@st.composite
def entries(draw: st.DrawFn, name: str) -> StateKeyPair:
    generation = draw(st.integers(0, 99))
    return StateKeyPair(
        name=name,
        api=draw(st.sampled_from(list(Api))),
        source=draw(st.sampled_from(list(KeySource))),
        public_key=draw(text),
        fingerprint_md5=draw(text),
        fingerprint_sha256=draw(text),
        created=draw(text),
        spec_digest=draw(text),
        algorithm=draw(opt_text),
        type=draw(st.sampled_from(["ssh", "x509"])),
        user_id=draw(opt_text),
        scope=draw(opt_text),
        description=draw(opt_text),
        key_protection=draw(protection),
        private_key=draw(sealed),
        status=draw(st.sampled_from(list(EntryStatus))),
        prevent_destroy=draw(st.booleans()),
        deliveries=draw(st.lists(deliveries, max_size=3).map(tuple)),
        generation=generation,
        deposed=draw(deposed_of(name, generation)),
    )


@st.composite
def documents(draw: st.DrawFn) -> StateDocument:
    chosen = draw(st.lists(names, unique=True, max_size=6))
    keypairs = {keypair_address(n): draw(entries(n)) for n in chosen}
    key = draw(st.builds(
        KeyBlock, id=st.just(KEY.id),
        kdf=st.none() | st.just({"name": "scrypt", "n": 32768, "r": 8, "p": 1}),
        salt=st.none() | st.just("c2FsdHNhbHRzYWx0")))
    state = State(lineage=draw(st.uuids()).hex, serial=draw(st.integers(0, 2**40)),
                  keypairs=keypairs)
    return StateDocument(state=state, key=key)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_any_document_survives_encode_and_decode(doc: StateDocument) -> None:
    data = encode_document(doc, key=KEY)
    again = decode_document(data, source="s.json")
    assert again == doc
    verify_document(again, key=KEY, source="s.json")
    assert encode_document(again, key=KEY) == data


# What the stored layout splits on and cuts, inside values where it must not split.
tricky = st.lists(st.sampled_from([
    '},"keypair.', '{"keypair.', '},"lineage":', ',"targets":{', ',"checksum":"', '"}', "\n",
    '"', "\\", "}", ",", "{", "keypair.", "\u00e9", "\u202e", "\x00", "a"]),
    max_size=8).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.lists(tricky, min_size=1, max_size=6))
def test_stored_document_is_its_signed_bytes_with_a_newline_before_each_entry(
        doc: StateDocument, values: list[str]) -> None:
    keypairs = {a: dataclasses.replace(e, description=values[i % len(values)],
                                       public_key=values[-1 - i % len(values)])
                for i, (a, e) in enumerate(doc.state.keypairs.items())}
    doc = StateDocument(dataclasses.replace(doc.state, keypairs=keypairs), doc.key)
    data = encode_document(doc, key=KEY)
    obj = json.loads(data)
    assert data.isascii() and data.endswith(b"}\n")
    assert obj == codec.document_to_dict(doc, key=KEY)
    # the newlines removed and the two sums cut: the canonical bytes the sums cover
    assert codec._stored_body(data, obj) == codec._body(obj)
    lines = data.split(b"\n")
    assert sum(line.startswith(b'"keypair.') for line in lines) == len(keypairs)
    again = decode_document(data, source="s.json")
    assert again == doc and again.signed == codec._body(obj)
    verify_document(again, key=KEY, source="s.json")


def test_every_layout_of_the_same_document_is_read() -> None:
    """Earlier releases indented the document (``indent=2``); a file reformatted by hand or
    by a tool holds the same value: each is checked against the canonical form it encodes."""
    data = _doc()
    obj = json.loads(data)
    layouts = {
        "indented, as earlier releases wrote it": json.dumps(
            codec.document_to_dict(decode_document(data, source="s.json"), key=KEY),
            indent=2, ensure_ascii=True).encode() + b"\n",
        "indented by a tool": json.dumps(obj, indent=4).encode(),
        "on one line": data.replace(b"\n", b""),
        "without the last newline": data[:-1],
        "CRLF": data.replace(b"\n", b"\r\n"),
    }
    for how, layout in layouts.items():
        assert codec._stored_body(layout, json.loads(layout)) in (None, codec._body(obj)), how
        again = decode_document(layout, source="s.json")
        verify_document(again, key=KEY, source="s.json")
        assert again.state == decode_document(data, source="s.json").state, how


def test_stored_bytes_changed_are_refused() -> None:
    data = _doc()
    edited = data.replace(b'"serial":4,', b'"serial":5,')
    with pytest.raises(StateCorruptError, match="checksum does not match"):
        decode_document(edited, source="s.json")
    # the checksum recomputed over the edited bytes: only the MAC tells
    flat = edited.replace(b"\n", b"")
    body = flat[:flat.rindex(b',"checksum":')] + b"}"
    forged = edited.replace(json.loads(data)["checksum"].encode(), codec._sha256(body).encode())
    doc = decode_document(forged, source="s.json")
    with pytest.raises(StateTamperedError):
        verify_document(doc, key=KEY, source="s.json")


@settings(max_examples=100, deadline=None)
@given(names.flatmap(entries))
def test_any_entry_survives_a_journal_line(e: StateKeyPair) -> None:
    line, tag = encode_journal_line(lineage="L", base=3, op="record", name=e.name, entry=e,
                                    mac_key=KEY, previous="seed")
    records, end = decode_journal(line, source="j")
    assert end == len(line)
    assert verify_journal(records, key=KEY, seed="seed", source="j") == tag
    assert records[0].entry == e and records[0].base == 3 and records[0].lineage == "L"


@settings(max_examples=100, deadline=None)
@given(names.flatmap(entries), st.sampled_from(["default", "prod-1"]))
def test_an_entry_read_by_the_fast_path_is_the_one_its_constructor_makes(
        e: StateKeyPair, target: str) -> None:
    e = dataclasses.replace(e, deliveries=(), target=target, generation=0,
                            deposed=None)  # what the fast path reads
    read = codec._sound_entry(e.name, entry_to_dict(e), target)
    assert read is not None
    assert read == e and repr(read) == repr(e) and hash(read) == hash(e)
    assert all(getattr(read, f.name) == getattr(e, f.name)
               for f in dataclasses.fields(StateKeyPair))
    assert dataclasses.replace(read, description="x") == dataclasses.replace(e, description="x")


def test_codec_covers_every_field_of_a_state_entry() -> None:
    delivered = DeliveryRecord(sink="csms:a", target="default", fingerprint="SHA256:x",
                               delivered="2026-01-01T00:00:00Z", version_id="v1")
    old = Deposed(cloud_name="a", public_key="ssh-ed25519 AAAA", fingerprint_md5="m",
                  fingerprint_sha256="s", private_key=SealedSecret("v1:AAAA"))
    full = entry("a", deliveries=(delivered,), servers=("s-1",), generation=1,
                 deposed=old)  # these four written only when set
    written = set(entry_to_dict(full)) | {"name", "target"}  # the address: its key
    # (an entry without deliveries is written without the field, as before there were any)
    assert not {"deliveries", "servers", "generation", "deposed"} & set(entry_to_dict(entry("a")))
    assert written == {f.name for f in dataclasses.fields(StateKeyPair)}


def _doc() -> bytes:
    state = State(lineage="lin", serial=4,
                  keypairs={keypair_address("a"): entry("a", SealedSecret("v1:AAAA"))})
    return encode_document(StateDocument(state, KEY.block), key=KEY)


def test_document_is_readable_json_with_a_checksum_and_a_mac() -> None:
    doc = json.loads(_doc())
    assert list(doc) == ["format_version", "key", "keypairs", "lineage", "serial", "targets",
                         "checksum", "mac"]
    assert doc["format_version"] == FORMAT_VERSION == 3
    assert doc["targets"] == {"default": {"region": None, "project_id": None, "api": None,
                                          "endpoint": None, "credentials": None}}
    assert doc["mac"].startswith("hmac-sha256:")
    assert doc["keypairs"][at("a")]["public_key"].startswith("ssh-ed25519 ")
    assert doc["checksum"] == checksum(doc)


@pytest.mark.parametrize("cut", [2, 10, 100, 500])
def test_truncated_document_is_refused(cut: int) -> None:
    data = _doc()
    with pytest.raises(StateCorruptError, match=r"not valid JSON.*s\.json\.backup"):
        decode_document(data[:-cut], source="s.json")


@pytest.mark.parametrize("junk", [b"", b"\x00\xff\xfe", b"[1, 2]", b"null", b"{}"])
def test_junk_is_refused(junk: bytes) -> None:
    with pytest.raises(StateCorruptError, match="not a valid state file"):
        decode_document(junk, source="s.json")


def test_edited_readable_field_fails_the_checksum() -> None:
    data = _doc().replace(b"ssh-ed25519 AAAA", b"ssh-ed25519 BAAA")
    with pytest.raises(StateCorruptError, match="checksum does not match"):
        decode_document(data, source="s.json")


def test_recomputed_checksum_does_not_pass_the_mac() -> None:
    doc = json.loads(_doc())
    doc["serial"] = 5
    doc["checksum"] = checksum(doc)
    decoded = decode_document(json.dumps(doc).encode(), source="s.json")
    with pytest.raises(StateTamperedError, match=r"s\.json failed its integrity check"):
        verify_document(decoded, key=KEY, source="s.json")
    good = decode_document(_doc(), source="s.json")
    with pytest.raises(StateTamperedError):
        verify_document(good, key=OTHER, source="s.json")  # the MAC is keyed


def test_format_2_without_a_mac_is_refused() -> None:
    doc = json.loads(_doc())
    del doc["mac"]
    doc["checksum"] = checksum(doc)
    with pytest.raises(StateCorruptError, match="no integrity MAC"):
        decode_document(json.dumps(doc).encode(), source="s.json")


def test_newer_format_version_says_upgrade() -> None:
    doc = json.loads(_doc())
    doc["format_version"] = KMS_FORMAT_VERSION + 1  # format 4 is format 3 under a KMS key
    doc["checksum"] = checksum(doc)
    with pytest.raises(StateCorruptError, match=r"newer than this reconciler.*upgrade"):
        decode_document(json.dumps(doc).encode(), source="s.json")


def test_duplicate_keys_and_unknown_fields_are_refused() -> None:
    data = _doc().replace(b'"serial":4,', b'"serial":4,"serial":5,')
    assert data != _doc()
    with pytest.raises(StateCorruptError, match="duplicate key"):
        decode_document(data, source="s.json")
    doc = json.loads(_doc())
    doc["keypairs"][at("a")]["privat_key"] = "oops"
    doc["checksum"] = checksum(doc)
    with pytest.raises(StateCorruptError, match="unknown field 'privat_key'"):
        decode_document(json.dumps(doc).encode(), source="s.json")


def test_wrong_types_are_refused_with_the_field() -> None:
    doc = json.loads(_doc())
    doc["keypairs"][at("a")]["status"] = "gone"
    doc["checksum"] = checksum(doc)
    with pytest.raises(StateCorruptError, match=r'keypairs\.keypair\.a\["default"\]\.status'):
        decode_document(json.dumps(doc).encode(), source="s.json")


def test_migration_chain_runs_from_an_older_version() -> None:
    # A made-up version 0 kept key pairs as a list; the hook turns it into version 1.
    v1 = json.loads(_doc())
    v0 = {k: v for k, v in v1.items() if k not in ("keypairs", "targets", "checksum", "mac")}
    v0["format_version"] = 0
    v0["keypairs"] = [{"name": "a", **e} for e in v1["keypairs"].values()]
    v0["checksum"] = checksum(v0)

    def v0_to_v1(doc: dict[str, object]) -> dict[str, object]:
        items = doc.pop("keypairs")
        assert isinstance(items, list)
        doc["keypairs"] = {i.pop("name"): i for i in items}
        return doc

    raw = json.dumps(v0).encode()
    migrated = decode_document(raw, source="s.json", migrations={0: v0_to_v1, **MIGRATIONS})
    current = decode_document(_doc(), source="s.json")
    assert (migrated.state, migrated.key) == (current.state, current.key)
    assert migrated.format_version == 0  # as read: reported unverified, upgraded on write
    with pytest.raises(StateCorruptError, match="cannot read or migrate"):
        decode_document(raw, source="s.json")


def test_journal_torn_last_line_is_ignored_other_damage_is_refused() -> None:
    lines, previous = [], ""
    for i in range(3):
        line, previous = encode_journal_line(lineage="L", base=0, op="record", name=f"k{i}",
                                             entry=entry(f"k{i}"), mac_key=KEY,
                                             previous=previous)
        lines.append(line)
    data = b"".join(lines)
    records, end = decode_journal(data + lines[0][:40], source="j")
    assert [r.name for r in records] == ["k0", "k1", "k2"] and end == len(data)
    verify_journal(records, key=KEY, seed="", source="j")
    edited = lines[0] + lines[1].replace(b"k1", b"k9") + lines[2]
    with pytest.raises(StateTamperedError, match="j line 2 failed its integrity check"):
        verify_journal(decode_journal(edited, source="j")[0], key=KEY, seed="", source="j")
    for reordered in (lines[1] + lines[0] + lines[2], lines[0] + lines[2]):
        with pytest.raises(StateTamperedError, match="failed its integrity check"):
            verify_journal(decode_journal(reordered, source="j")[0], key=KEY, seed="",
                           source="j")
    with pytest.raises(StateTamperedError):  # moved to another journal (another seed)
        verify_journal(records, key=KEY, seed="elsewhere", source="j")
    with pytest.raises(StateCorruptError, match="line 2 is damaged"):
        decode_journal(lines[0] + b"garbage\n" + lines[2], source="j")


# --- the fast reading of entries and addresses agrees with the field-by-field one -----------

_VALUES = st.sampled_from([
    None, True, False, 0, 1.5, "", " ", "ssh", "x509", "kps", "v2.1", "v2", "generate",
    "import", "cloud", "ready", "pending", "tainted", "READY", [], {}, ["ssh"],
    {"encryption": {"type": "kms", "kms_key_name": "k"}},
    {"encryption": {"type": "kms"}, "private_key_file": "/k"},
    {"encryption": {"type": 1}}, {"encryption": None}, {"other": 1},
])
_FIELDS = st.sampled_from(sorted(codec._ENTRY_FIELDS | {"bogus", "name"}))


def _outcome(read: object) -> object:
    try:
        return read()  # type: ignore[operator]
    except ValueError as exc:
        return ("refused", str(exc))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_FIELDS, _VALUES, st.booleans()), max_size=3),
       st.sampled_from(["web", "a" * 64, "a" * 65, "bad name", "", "web\n"]))
def test_an_entry_reads_the_same_as_the_field_by_field_check_reads_it(
        edits: list[tuple[str, object, bool]], name: str) -> None:
    obj: dict[str, object] = entry_to_dict(entry("web", SealedSecret("v3:abc")))
    for fld, value, delete in edits:
        if delete:
            obj.pop(fld, None)
        else:
            obj[fld] = value
    fast = _outcome(lambda: codec.entry_from_dict(name, dict(obj), where="w", target="t"))
    slow = _outcome(lambda: codec._checked_entry(name, dict(obj), where="w", target="t"))
    assert fast == slow


@pytest.mark.parametrize("text", [
    'keypair.web["default"]', 'keypair.web["t-1"]', 'keypair.a_b-C9["x"]',
    ' keypair.web["t"]', 'keypair.web["t"] ', 'keypair.web["T"]', 'keypair.web["t\n"]',
    'keypair.web["-t"]', 'keypair.web', 'web["t"]', 'keypair.web[""]', 'other.web["t"]',
    'keypair.' + "a" * 65 + '["t"]', 'keypair.web["' + "t" * 64 + '"]',
    'keypair.web["a\\"b"]', 'keypair.web["t"]["u"]',
])
def test_a_full_address_reads_as_the_general_parser_reads_it(text: str) -> None:
    def general() -> tuple[str, str]:
        from reconciler.address import parse_address

        try:
            query = parse_address(text)
        except ValueError:
            query = None
        if query is None or query.target is None \
                or codec.full_address(query.name, query.target) != text:
            raise ValueError(f"w: {text[:80]!r} is not a key pair address with its target "
                             '(keypair.NAME["TARGET"])')
        return query.name, query.target

    assert _outcome(lambda: codec.parse_full_address(text, where="w")) == _outcome(general)


def test_a_duplicate_key_is_named_however_many_keys_the_object_has() -> None:
    doc = b'{"a": 1, "b": 2, "a": 3, "b": 4}'
    with pytest.raises(StateCorruptError, match="duplicate key 'a'"):
        decode_document(doc, source="s.json")


@pytest.mark.parametrize(("field", "value", "said"), [
    ("generation", -1, "generation: must be a whole number from 0 to 99"),
    ("generation", 100, "generation: must be a whole number from 0 to 99"),
    ("generation", "1", "generation: must be a whole number from 0 to 99"),
    ("deposed", [], "deposed: must be an object"),
    ("deposed", {"cloud_name": "other", "public_key": "k", "fingerprint_md5": "m",
                 "fingerprint_sha256": "s"}, "deposed.cloud_name: 'other' is not a generation"),
    ("deposed", {"cloud_name": "a", "public_key": "k", "fingerprint_md5": "m",
                 "fingerprint_sha256": "s", "extra": 1}, "deposed: unknown field 'extra'"),
    ("deposed", {"cloud_name": "a-gate", "public_key": "k", "fingerprint_md5": "m",
                 "fingerprint_sha256": "s"}, "deposed.cloud_name: 'a-gate' is not a generation"),
    ("deposed", {"cloud_name": "a-g01", "public_key": "k", "fingerprint_md5": "m",
                 "fingerprint_sha256": "s"}, "deposed.cloud_name: 'a-g01' is not a generation"),
])
def test_a_bad_generation_or_deposed_generation_is_named(field: str, value: object,
                                                         said: str) -> None:
    raw = {**entry_to_dict(entry("a")), field: value}
    with pytest.raises(ValueError, match=said.replace("(", r"\(")):
        codec.entry_from_dict("a", raw, where="keypairs.a")
