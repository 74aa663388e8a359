"""Reading a manifest document safely: limits before parsing, then strict YAML (JSON is YAML).

Every limit is checked before the recursive parser sees a byte: size, emptiness, and the depth
of flow nesting; block nesting is bounded by the size limit and caught as a backstop. YAML is
strict: duplicate keys refused, no tags (the safe loader), no aliases that repeat a node. libyaml
parses where PyYAML has it, with the pure-Python loader describing any refusal the same way.
"""

from __future__ import annotations

from typing import Any

import yaml

from aztrain.domain.errors import DOCUMENT, SYNTAX, FieldProblem, ManifestError


class _UniqueKeys:
    """Refuses duplicate keys in a mapping: PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[attr-defined]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}; each field may appear once", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc, no-any-return]


class _PureUniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """The pure-Python safe loader, refusing duplicate keys."""


# libyaml parses ~20x faster; the safe constructor (no tags) and the duplicate-key check are the same.
_UniqueKeyLoader: type[yaml.SafeLoader] = _PureUniqueKeyLoader
if yaml.__with_libyaml__:

    class _CUniqueKeyLoader(_UniqueKeys, yaml.CSafeLoader):
        """libyaml's safe loader, refusing duplicate keys."""

    _UniqueKeyLoader = _CUniqueKeyLoader  # type: ignore[assignment]


def _load(text: str | bytes) -> Any:
    """One YAML document through the fast loader; a refused one is parsed again by the pure-Python
    loader, so the error (and the line and column it names) is the same whichever loader is installed."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        if _UniqueKeyLoader is _PureUniqueKeyLoader:
            raise
    return yaml.load(text, Loader=_PureUniqueKeyLoader)  # noqa: S506 - raises the same refusal, described alike


def _refused(message: str, source: str, *, field: str = DOCUMENT) -> ManifestError:
    return ManifestError([FieldProblem(field, message)], source=source)


def read_document(text: str | bytes, *, source: str = "", max_bytes: int = 64 * 1024) -> object:
    """The decoded YAML or JSON document, or `ManifestError` naming the limit or the syntax error."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > max_bytes:
        raise _refused(f"document is {size} bytes; the limit is {max_bytes} bytes", source)
    if size == 0:
        raise _refused("document is empty; see `aztrain schema` or examples/digits.yaml", source)
    depth = _nesting(text if isinstance(text, bytes) else text.encode())
    if depth > MAX_NESTING:
        raise _refused(f"document nests {depth} levels deep; the limit is {MAX_NESTING}", source)
    try:
        document = _load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise _refused(f"not valid YAML or JSON{at}: {getattr(exc, 'problem', exc)}", source, field=SYNTAX) from None
    except RecursionError:  # block-style nesting the bracket count does not see
        raise _refused(f"document nests too deeply; the limit is {MAX_NESTING} levels", source) from None
    if _repeats_a_node(document):
        raise _refused("document repeats a list or mapping through a YAML alias (*name); write it out", source)
    chars = _text_chars(document)
    if chars > MAX_CHARS:  # only aliases that repeat a string get this far: counted before anything copies them
        raise _refused(f"document's text comes to {chars:,} characters; the limit is {MAX_CHARS:,}", source)
    return document


def peek_name(text: str | bytes, *, max_bytes: int) -> str | None:
    """The `name` of a document that failed validation, if it is small, shallow and YAML; else None.

    Only for labelling a rejection: never parses what the limits refuse.
    """
    raw = text if isinstance(text, bytes) else text.encode()
    if not raw or len(raw) > max_bytes or _nesting(raw) > MAX_NESTING:
        return None
    try:
        document = _load(raw)
    except (yaml.YAMLError, RecursionError):
        return None
    name = document.get("name") if isinstance(document, dict) else None
    return name if isinstance(name, str) else None


#: Deepest nesting a manifest may have: the schema itself needs 4 levels.
MAX_NESTING = 32
#: The most characters a manifest may come to: its text once parsed, and its normalised JSON, which is
#: what the store keeps of it in one row (Table Storage: 1 MiB an entity; `adapters.storage.tables`
#: spreads the JSON over 64 KiB string properties). Four times the default document limit (64 KiB):
#: JSON of a YAML or JSON document is at most about three times its size, so every manifest under the
#: document limit fits, unless YAML aliases repeat a long string.
MAX_CHARS = 256_000


def _nesting(text: bytes) -> int:
    """The deepest run of open flow brackets (`[`, `{`): a cheap guard before the recursive YAML parser."""
    depth = deepest = 0
    for byte in text.translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _text_chars(document: object) -> int:
    """Characters of the document's keys and scalar values (aliases of a string count each time)."""
    total, pending = 0, [document]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        else:
            total += len(str(node))
    return total


def _repeats_a_node(document: object) -> bool:
    """True when one list or mapping appears twice: YAML aliases of aliases ("billion laughs") make a
    kilobyte document that validating or hashing would expand exponentially. Linear in distinct nodes."""
    seen: set[int] = set()
    pending = [document]
    while pending:
        node = pending.pop()
        if isinstance(node, dict | list):
            if id(node) in seen:
                return True
            seen.add(id(node))
            pending.extend(node.values() if isinstance(node, dict) else node)
    return False
