"""Text that is safe to put on a terminal, in a log or in a Markdown comment.

Anything shown to people may hold text that came from the cloud, a manifest or a state file
(descriptions, comments, server error messages, names from a hostile listing). ``printable``
writes every control character (C0, DEL, C1, so ESC and BEL too) and every bidirectional
override as a visible escape (``\\x1b``, ``\\u202e``), so that such text cannot move the
cursor, clear the screen, set the window title, hide itself or reorder what follows.
Backslashes are left alone: ``printable`` is idempotent, so layers may each apply it.

``markdown_text``, ``markdown_code`` and ``code_fence`` do the same for the pull-request
comment, where ``|``, ``<`` and backticks would otherwise end a table cell, open HTML or
close a code block, and where ``@name``, an e-mail address or a bare URL (``https://…``,
``www.…``) would notify someone or become a link: ``markdown_text`` puts each such word in
inline code, where GitHub and GitLab do neither (a server named ``@org/security`` in the
cloud must not page a team through the plan comment).

May import: the standard library only.
"""

from __future__ import annotations

import re

# C0 controls, DEL and C1 controls; bidi embeddings, overrides and isolates; the implicit
# marks and the line/paragraph separators that some terminals and viewers act on; what shows
# as nothing (soft hyphen, zero-width characters, word joiners, the BOM, tag characters) and
# lone surrogates (a JSON answer may hold one; no terminal or file can carry it).
_INVISIBLE = ("\u00ad\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u2064\u2066-\u2069"
              "\ufeff\U000e0000-\U000e007f\ud800-\udfff")
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}]")
_UNSAFE_KEEP_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_INVISIBLE}]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # what acts inside a table cell
_PLAIN_CODE = re.compile(r"[A-Za-z0-9 :_=+/.,@()-]*")
_BACKTICKS = re.compile(r"`+")
# A word that GitHub or GitLab would make a mention, an e-mail link or a link of.
_LIVE_WORD = re.compile(r"[^\s]*(?:@|://)[^\s]*|(?<![^\s])www\.[^\s]*", re.IGNORECASE)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character and bidi override escaped; ``multiline`` keeps
    line feeds and tabs (for messages of several lines), everything else is escaped."""
    pattern = _UNSAFE_KEEP_LINES if multiline else _UNSAFE
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def is_printable(text: str, *, multiline: bool = False) -> bool:
    pattern = _UNSAFE_KEEP_LINES if multiline else _UNSAFE
    return pattern.search(text) is None


def markdown_text(text: str) -> str:
    """Plain text for a Markdown table cell or list: one line, nothing that Markdown or HTML
    would act on; a word that would mention, link or mail (``@``, ``://``, ``www.``) as
    inline code."""
    text = printable(text)
    out, end = [], 0
    for m in _LIVE_WORD.finditer(text):
        out += [_escaped(text[end:m.start()]), _inline_code(m.group())]
        end = m.end()
    out.append(_escaped(text[end:]))
    return "".join(out)


def _escaped(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("&", "&amp;").replace("<", "&lt;"))


def _inline_code(word: str) -> str:
    """``word`` (no whitespace) as a code span: fenced with more backticks than it holds in a
    row, padded where it starts or ends with one, its ``|`` escaped for a table cell."""
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(word)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if word.startswith("`") or word.endswith("`") else ""
    return f"{fence}{pad}{word.replace('|', chr(92) + '|')}{pad}{fence}"


def markdown_code(text: str) -> str:
    """``text`` as inline code when it is plain (names, fingerprints), else as escaped text:
    a code span cannot escape a backtick or a ``|`` inside a table."""
    text = printable(text)
    if _PLAIN_CODE.fullmatch(text):
        return f"`{text}`"
    return markdown_text(text)


def code_fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in ``text`` (at least three), so that
    nothing inside can close the code block."""
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(text)), default=0)
    return "`" * max(3, longest + 1)
