"""A safe YAML reader that keeps the line and column of every node, within limits.

``read_yaml_documents(path, display=...)`` reads one file (size checked before reading),
decodes it as UTF-8, and builds plain values (dict, list, str, int, float, bool, None) with a
parallel map from node paths (tuples of keys and indexes) to positions. A plain text (no
anchors, aliases, tags or merge keys) is built straight from libyaml's events; anything else,
and every error, goes through PyYAML's safe composer to a node tree first (libyaml's parser when
present: its events carry marks too), with the same result for what both can read. Limits:
file size, nesting depth, alias count and expanded node count (alias bombs).
Every problem is a ``Diagnostic``; nothing else escapes.

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.fsutil``, PyYAML (lazily,
inside functions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import Diagnostic
from reconciler.fsutil import UnsafeFileError, read_regular
from reconciler.model import SourceLocation

if TYPE_CHECKING:
    import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 100
MAX_EXPANDED = 10_000  # nodes reached through aliases, per document

NodePath = tuple[str | int, ...]
Position = tuple[int, int]  # line, column; both from 1

_STD = "tag:yaml.org,2002:"


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """One document: its plain value and where each of its nodes is.

    ``positions[path]`` is the value node at ``path``; ``key_positions[path]`` is the key that
    introduced it (for mapping entries only). The root's path is ``()``.
    """

    value: object
    positions: Mapping[NodePath, Position]
    key_positions: Mapping[NodePath, Position]
    file: str
    index: int  # 0-based document number within the file

    def location(self, path: NodePath, *, key: bool = False) -> SourceLocation:
        """The nearest known position of ``path`` (or of its key), walking up if needed."""
        table = self.key_positions if key else self.positions
        probe = path
        while probe not in table and probe:
            probe = probe[:-1]
            table = self.positions
        line, column = table.get(probe, (1, 1))
        return SourceLocation(self.file, line, column)


class _LimitError(Exception):
    """A limit was exceeded while composing or building; carries the node's mark."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


def _loader_class() -> type[Any]:
    """A safe loader whose composer counts aliases and nesting depth."""
    import yaml
    from yaml.composer import Composer
    from yaml.events import AliasEvent

    class LimitedComposer(Composer):
        def compose_node(self, parent: Any, index: Any) -> Any:
            depth = getattr(self, "_depth", 0)
            if self.check_event(AliasEvent):  # type: ignore[attr-defined]
                aliases = getattr(self, "_aliases", 0) + 1
                self._aliases = aliases
                if aliases > MAX_ALIASES:
                    mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                    raise _LimitError(f"more than {MAX_ALIASES} aliases in one file", mark)
            elif depth >= MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[attr-defined]
                raise _LimitError(f"nested deeper than {MAX_DEPTH} levels", mark)
            self._depth = depth + 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth = depth

    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]

        parser: type[Any] = CParser
    except ImportError:  # PyYAML built without libyaml
        parser = yaml.parser.Parser
    bases: tuple[type[Any], ...]
    if parser is yaml.parser.Parser:
        bases = (yaml.reader.Reader, yaml.scanner.Scanner, parser)
    else:
        bases = (parser,)

    class Loader(LimitedComposer, *bases, yaml.constructor.SafeConstructor,  # type: ignore[misc]
                 yaml.resolver.Resolver):
        def __init__(self, stream: str) -> None:
            if parser is yaml.parser.Parser:
                yaml.reader.Reader.__init__(self, stream)
                yaml.scanner.Scanner.__init__(self)
                yaml.parser.Parser.__init__(self)
            else:
                parser.__init__(self, stream)
            Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)

    return Loader


_LOADER: type[Any] | None = None


def _get_loader() -> type[Any]:
    global _LOADER
    if _LOADER is None:
        _LOADER = _loader_class()
    return _LOADER


def read_text(path: Path, *, display: str, limit: int = MAX_FILE_BYTES) -> str | Diagnostic:
    """The file's text, or a diagnostic: missing, not a file, too large, not UTF-8, binary."""
    where = SourceLocation(display, 1, 1)
    try:
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a regular file"
            return Diagnostic(f"{display} {what}", where, detail="give a YAML file or directory")
        size = path.stat().st_size
        if size > limit:
            return Diagnostic(
                f"file is {size:,} bytes; manifests are limited to {limit:,} bytes",
                where, detail="split it into several files in one directory",
            )
        data = read_regular(path, limit=limit)  # a FIFO swapped in never hangs
    except UnsafeFileError as exc:
        return Diagnostic(f"{display} {exc.problem}", where,
                          detail="give a YAML file or directory")
    except OSError as exc:
        return Diagnostic(f"cannot read {display}: {exc.strerror or exc}", where)
    if len(data) > limit:
        return Diagnostic(f"file is larger than {limit:,} bytes", where)
    return decode_text(data, display=display)


def decode_text(data: bytes, *, display: str) -> str | Diagnostic:
    """UTF-8 (an optional BOM is dropped); NUL bytes mean binary, not YAML."""
    if b"\x00" in data:
        line, col = _offset_position(data, data.index(b"\x00"))
        return Diagnostic(
            "this is a binary file, not YAML (it contains NUL bytes)",
            SourceLocation(display, line, col), detail="only YAML manifests belong here",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, col = _offset_position(data, exc.start)
        return Diagnostic(
            "the file is not valid UTF-8", SourceLocation(display, line, col),
            detail="save it as UTF-8 text",
        )


def _offset_position(data: bytes, offset: int) -> Position:
    line = data.count(b"\n", 0, offset) + 1
    start = data.rfind(b"\n", 0, offset) + 1
    return line, offset - start + 1


def read_yaml_documents(
    path: Path, *, display: str
) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Every non-empty document of one file, or the diagnostics that prevent reading it."""
    text = read_text(path, display=display)
    if isinstance(text, Diagnostic):
        return [], [text]
    return parse_yaml_documents(text, display=display)


def parse_yaml_documents(
    text: str, *, display: str
) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """Parse YAML text (already decoded) into documents; see ``read_yaml_documents``."""
    plain = _plain_documents(text, display)
    if plain is not None:
        return plain, []
    return _composed_documents(text, display)


def _composed_documents(
    text: str, display: str
) -> tuple[list[YamlDocument], list[Diagnostic]]:
    """The composer's path: a node tree, every limit and error, then ``_Builder``."""
    import yaml

    docs: list[YamlDocument] = []
    loader: Any = None
    try:
        loader = _get_loader()(text)
        index = 0
        while loader.check_node():
            node = loader.get_node()
            loader.anchors = {}
            if node is not None and not _is_empty(node):
                docs.append(_Builder(display, index).document(node))
            index += 1
    except _LimitError as exc:
        return [], [_marked(display, exc.mark, str(exc), _FLAT)]
    except yaml.MarkedYAMLError as exc:
        return [], [_too_deep(text, display) or _yaml_diagnostic(display, exc)]
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return [], [Diagnostic(f"invalid YAML: character #x{exc.character:04x} is not allowed",
                               SourceLocation(display, line, col),
                               detail="remove control characters; manifests are plain text")]
    except yaml.YAMLError as exc:
        return [], [Diagnostic(f"invalid YAML: {exc}", SourceLocation(display, 1, 1))]
    except RecursionError:
        return [], [_too_deep(text, display)
                    or Diagnostic(f"nested deeper than {MAX_DEPTH} levels",
                                  SourceLocation(display, 1, 1), detail=_FLAT)]
    finally:
        if loader is not None:
            loader.dispose()
    return docs, []


_FLAT = "manifests are small, flat documents; write this one out plainly"


class _Unusual(Exception):
    """The text uses something ``_plain_documents`` leaves to the composer."""


def _plain_documents(text: str, display: str) -> list[YamlDocument] | None:
    """The documents of ``text`` built straight from libyaml's events, or ``None``.

    This is the path of a plain manifest, and it builds the same values and positions as the
    composer and ``_Builder`` do, without a node tree. It gives up (``None``, and the composer
    then reads the text from the start, deciding every error and limit as before) on anything
    else: anchors, aliases, tags, merge keys, duplicate or non-scalar keys, nesting near the
    limit, a syntax error, or PyYAML without libyaml.
    """
    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]
    except ImportError:
        return None
    import yaml

    parser = CParser(text)
    try:
        return _EventBuilder(parser.get_event, display).documents()
    except (_Unusual, yaml.YAMLError, RecursionError):
        return None
    finally:
        parser.dispose()


class _EventBuilder:
    """Plain values and positions from a stream of parser events (``_plain_documents``)."""

    def __init__(self, next_event: Any, display: str) -> None:
        from yaml import events
        from yaml.resolver import Resolver

        self.next = next_event
        self.display = display
        self.implicit: dict[Any, list[tuple[str, Any]]] = Resolver.yaml_implicit_resolvers
        self.wildcard = self.implicit.get(None, [])
        self.scalar_event = events.ScalarEvent
        self.mapping_start, self.mapping_end = events.MappingStartEvent, events.MappingEndEvent
        self.sequence_start = events.SequenceStartEvent
        self.sequence_end = events.SequenceEndEvent
        self.document_end = events.DocumentEndEvent
        self.stream_end = events.StreamEndEvent
        self.positions: dict[NodePath, Position] = {}
        self.key_positions: dict[NodePath, Position] = {}
        self.builder = _Builder(display, 0)

    def documents(self) -> list[YamlDocument]:
        docs: list[YamlDocument] = []
        self.next()  # the stream's start
        index = 0
        while type(self.next()) is not self.stream_end:  # a document's start
            self.positions, self.key_positions = {}, {}
            event = self.next()
            value = self.node(event, (), 0)
            if type(self.next()) is not self.document_end:
                raise _Unusual
            if not (type(event) is self.scalar_event and value is None
                    and event.value in ("", "~", "null", "Null", "NULL")):
                docs.append(YamlDocument(value, self.positions, self.key_positions,
                                         self.display, index))
            index += 1
        return docs

    def node(self, event: Any, path: NodePath, depth: int) -> object:
        kind = type(event)
        if kind is self.scalar_event:
            if event.anchor is not None or event.tag is not None:
                raise _Unusual
            mark = event.start_mark
            self.positions[path] = (mark.line + 1, mark.column + 1)
            return self.scalar(event)
        if kind is not self.mapping_start and kind is not self.sequence_start:
            raise _Unusual  # an alias
        if event.anchor is not None or event.tag is not None or depth >= MAX_DEPTH - 1:
            raise _Unusual
        mark = event.start_mark
        self.positions[path] = (mark.line + 1, mark.column + 1)
        if kind is self.sequence_start:
            items: list[object] = []
            while type(child := self.next()) is not self.sequence_end:
                items.append(self.node(child, (*path, len(items)), depth + 1))
            return items
        out: dict[str, object] = {}
        while type(key := self.next()) is not self.mapping_end:
            if type(key) is not self.scalar_event or key.anchor is not None \
                    or key.tag is not None:
                raise _Unusual
            name = key.value
            if name in out or (name == "<<" and key.implicit[0]):
                raise _Unusual  # a duplicate or a merge key: the composer's to report or expand
            child_path = (*path, name)
            at: Any = key.start_mark
            self.key_positions[child_path] = (at.line + 1, at.column + 1)
            out[name] = self.node(self.next(), child_path, depth + 1)
        return out

    def scalar(self, event: Any) -> object:
        """The value the composer's resolver and ``_Builder.scalar`` give this scalar."""
        import yaml

        value: str = event.value
        if not event.implicit[0]:
            return value  # quoted or a block scalar, untagged: a string
        for tag, pattern in self.implicit.get(value[:1], []) + self.wildcard:
            if pattern.match(value):
                if tag == _STD + "str":
                    return value
                return self.builder.scalar(yaml.ScalarNode(
                    tag, value, event.start_mark, event.end_mark, style=event.style))
        return value


def _too_deep(text: str, display: str) -> Diagnostic | None:
    """The depth diagnostic, at a position decided here, when the text nests flow collections
    deeper than the limit.

    Parsers refuse very deep nesting themselves, each version at its own depth and with its own
    wording (libyaml's scanner looks ahead and may refuse before the composer counts a level), so
    when parsing failed this scan decides whether depth was the cause and where it was crossed:
    the flow collection opened at level ``MAX_DEPTH``. Quoted scalars and comments are skipped.
    """
    depth, line, col, quote = 0, 1, 0, ""
    previous = "\n"
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        col += 1
        if ch == "\n":
            line, col, previous = line + 1, 0, ch
            i += 1
            continue
        if quote:
            if quote == '"' and ch == "\\":
                i, col = i + 2, col + 1
                continue
            if ch == quote:
                if quote == "'" and text.startswith("''", i):
                    i, col = i + 2, col + 1
                    continue
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and previous in " \t\n":
            skip = text.find("\n", i)
            i = end if skip < 0 else skip
            col -= 1
            continue
        elif ch in "[{":
            depth += 1
            if depth >= MAX_DEPTH:
                return Diagnostic(f"nested deeper than {MAX_DEPTH} levels",
                                  SourceLocation(display, line, col), detail=_FLAT)
        elif ch in "]}":
            depth = max(0, depth - 1)
        previous = ch
        i += 1
    return None


def _is_empty(node: yaml.Node) -> bool:
    return node.tag == _STD + "null" and node.value in ("", "~", "null", "Null", "NULL")


def _marked(display: str, mark: Any, summary: str, detail: str = "") -> Diagnostic:
    line = int(getattr(mark, "line", 0)) + 1 if mark is not None else 1
    col = int(getattr(mark, "column", 0)) + 1 if mark is not None else 1
    return Diagnostic(summary, SourceLocation(display, line, col), detail=detail)


def _yaml_diagnostic(display: str, exc: yaml.MarkedYAMLError) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "syntax error"
    context = f" ({exc.context})" if exc.context else ""
    return _marked(display, mark, f"invalid YAML: {problem}{context}",
                   detail="fix the YAML syntax; a linter such as yamllint shows more")


class _Builder:
    """Turns a node graph into plain values and positions, counting expanded nodes."""

    def __init__(self, display: str, index: int) -> None:
        self.display = display
        self.index = index
        self.positions: dict[NodePath, Position] = {}
        self.key_positions: dict[NodePath, Position] = {}
        self.expanded = 0
        self.seen: set[int] = set()
        self.constructor: Any = None

    def document(self, node: yaml.Node) -> YamlDocument:
        value = self.build(node, (), 0)
        return YamlDocument(value, self.positions, self.key_positions, self.display, self.index)

    def build(
        self, node: yaml.Node, path: NodePath, depth: int, aliased: bool = False
    ) -> object:
        import yaml

        aliased = aliased or id(node) in self.seen
        self.seen.add(id(node))
        if aliased:
            self.expanded += 1
            if self.expanded > MAX_EXPANDED:
                raise _LimitError(f"aliases expand to more than {MAX_EXPANDED:,} nodes",
                                  node.start_mark)
        if depth > MAX_DEPTH:
            raise _LimitError(f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
        self.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path, depth, aliased)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, "seq")
            return [self.build(child, (*path, i), depth + 1, aliased)
                    for i, child in enumerate(node.value)]
        return self.scalar(node)

    def _check_tag(self, node: yaml.Node, kind: str) -> None:
        import yaml

        if node.tag != _STD + kind:
            raise yaml.constructor.ConstructorError(
                None, None, f"unsupported tag {node.tag[:60]!r}", node.start_mark
            )

    def scalar(self, node: yaml.Node) -> object:
        import yaml

        if node.tag == _STD + "str":
            return str(node.value)
        if self.constructor is None:
            self.constructor = yaml.constructor.SafeConstructor()
        try:
            value = self.constructor.construct_object(node, deep=True)
        except Exception:  # e.g. the date 2020-02-30, `!!timestamp xyz`: keep the text
            return str(node.value)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            return str(node.value)  # no field takes such a number; its text is kinder to print
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        return str(node.value)  # timestamps, binary: keep the text as written

    def mapping(
        self, node: yaml.MappingNode, path: NodePath, depth: int, aliased: bool
    ) -> dict[str, object]:
        import yaml

        self._check_tag(node, "map")
        out: dict[str, object] = {}
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _STD + "merge":
                merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [
                    value_node]
                for source in merged:
                    self.expanded += 1  # a merge re-walks its source: it counts as expansion
                    if self.expanded > MAX_EXPANDED:
                        raise _LimitError(f"merge keys expand to more than {MAX_EXPANDED:,} "
                                          "nodes", source.start_mark)
                    if not isinstance(source, yaml.MappingNode):
                        raise yaml.constructor.ConstructorError(
                            None, None, "a merge key (<<) needs a mapping or a list of mappings",
                            source.start_mark)
                    for k, v in self.mapping(source, path, depth + 1, True).items():
                        if k not in explicit:
                            out.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "mapping keys must be plain strings", key_node.start_mark)
            key = str(key_node.value)
            if key in explicit:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key[:60]!r}", key_node.start_mark)
            explicit.add(key)
            child = (*path, key)
            self.key_positions[child] = (key_node.start_mark.line + 1,
                                         key_node.start_mark.column + 1)
            out[key] = self.build(value_node, child, depth + 1, aliased)
        return out
