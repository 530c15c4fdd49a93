"""A small declarative schema for YAML configuration, checked on the node tree.

Validating PyYAML's node tree (not the loaded dicts) keeps the line of every
key, so each problem is reported as ``key.path (line N): what is wrong`` and
all problems are reported at once, not just the first.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import yaml


@dataclass(frozen=True)
class Problem:
    path: str
    line: Optional[int]
    message: str

    def __str__(self) -> str:
        where = self.path or "(top level)"
        if self.line is not None:
            where += " (line %d)" % self.line
        return "%s: %s" % (where, self.message)


class Errors:
    """Collects problems while a whole document is checked."""

    def __init__(self) -> None:
        self.problems: List[Problem] = []

    def add(self, path: str, node: Optional[yaml.Node], message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.problems.append(Problem(path, line, message))


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return "%s[%d]" % (path, key)
    return "%s.%s" % (path, key) if path else str(key)


class Schema:
    """Base: ``load`` returns the checked Python value, or None after an error."""

    expected = "a value"

    def load(self, node: Optional[yaml.Node], path: str, errors: Errors) -> Any:  # None: an empty document
        raise NotImplementedError

    def accepts(self, node: yaml.Node) -> bool:
        """Whether this schema is the right alternative for ``node`` in ``Either``."""
        return isinstance(node, yaml.ScalarNode)


class Scalar(Schema):
    """A scalar checked and converted by ``convert``, which raises ValueError."""

    def __init__(self, expected: str, convert: Callable[[Any], Any]):
        self.expected = expected
        self._convert = convert

    def load(self, node, path, errors):
        if not isinstance(node, yaml.ScalarNode):
            errors.add(path, node, "expected %s" % self.expected)
            return None
        value = yaml.constructor.SafeConstructor().construct_object(node)
        try:
            return self._convert(value)
        except (ValueError, TypeError) as exc:
            message = "expected %s, got %r" % (self.expected, value)
            errors.add(path, node, message + (" (%s)" % exc if str(exc) else ""))
            return None


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError()
    return value


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError()
    return value


def _integer(minimum: int) -> Callable[[Any], int]:
    def convert(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError()
        if value < minimum:
            raise ValueError("must be at least %d" % minimum)
        return value

    return convert


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value) -> float:
    """Seconds from ``250ms``, ``2s``, ``1m``, ``1h`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError("use e.g. 250ms, 2s, 1m")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if not seconds > 0:  # also NaN (YAML's .nan), which no comparison would reject later
        raise ValueError("must be positive")
    if math.isinf(seconds):  # YAML's .inf, or more digits than a float holds: threads' waits raise on it
        raise ValueError("must be finite")
    return seconds


def _regex_with_group(group: str) -> Callable[[Any], Any]:
    def convert(value):
        if not isinstance(value, str):
            raise ValueError("not a string")
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError("invalid regular expression: %s" % exc) from None
        if group not in compiled.groupindex:
            raise ValueError("needs a named group (?P<%s>...)" % group)
        return compiled

    return convert


def _one_of(choices: Sequence[str]) -> Callable[[Any], str]:
    def convert(value):
        if value not in choices:
            raise ValueError()
        return value

    return convert


def glob_path(value) -> str:
    """A file path or glob whose pattern compiles (``[z-a]`` would only fail later, when files are matched)."""
    from exporter.paths import PathPattern

    path = _string(value)
    try:
        PathPattern(path)
    except re.error as exc:
        raise ValueError("not a valid glob: %s" % exc) from None
    return path


def Glob() -> Scalar:  # noqa: N802 - named as the type it builds
    return Scalar("a file path or glob", glob_path)


def String() -> Scalar:  # noqa: N802 - named as the type it builds
    return Scalar("a non-empty string", _string)


def Boolean() -> Scalar:  # noqa: N802 - named as the type it builds
    return Scalar("true or false", _boolean)


def Integer(minimum: int = 0) -> Scalar:  # noqa: N802 - named as the type it builds
    return Scalar("an integer >= %d" % minimum, _integer(minimum))


def Duration() -> Scalar:  # noqa: N802 - named as the type it builds
    return Scalar("a duration", parse_duration)


def GroupRegex(group: str) -> Scalar:  # noqa: N802 - named as the type it builds
    return Scalar("a regular expression with a (?P<%s>...) group" % group, _regex_with_group(group))


def HostRegex() -> Scalar:  # noqa: N802 - named as the type it builds
    return GroupRegex("host")


def OneOf(*choices: str) -> Scalar:  # noqa: N802 - named as the type it builds
    return Scalar("one of %s" % ", ".join(choices), _one_of(choices))


@dataclass(frozen=True)
class Field:
    schema: Schema
    default: Any = None
    required: bool = False
    doc: str = ""


class Struct(Schema):
    """A mapping with known keys; unknown keys are errors. ``build`` gets the values."""

    expected = "a mapping"

    def __init__(self, fields: Dict[str, Field], build: Callable[..., Any] = dict):
        self.fields = fields
        self._build = build

    def accepts(self, node):
        return isinstance(node, yaml.MappingNode)

    def load(self, node, path, errors):
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"):
            pairs = []  # an empty section: defaults, but required keys are still missing
        elif not isinstance(node, yaml.MappingNode):
            errors.add(path, node, "expected a mapping")
            return None
        else:
            pairs = node.value
        values: Dict[str, Any] = {}
        failed = False
        for key_node, value_node in pairs:
            key = key_node.value
            key_path = _join(path, key)
            if key not in self.fields:
                errors.add(key_path, key_node, "unknown key (known: %s)" % ", ".join(sorted(self.fields)))
                failed = True
                continue
            if key in values:
                errors.add(key_path, key_node, "duplicate key")
                failed = True
                continue
            before = len(errors.problems)
            values[key] = self.fields[key].schema.load(value_node, key_path, errors)
            failed = failed or len(errors.problems) > before
        for key, spec in self.fields.items():
            if key not in values:
                if spec.required:
                    errors.add(_join(path, key), node, "required key is missing")
                    failed = True
                values[key] = spec.default
        return None if failed else self._build(**values)

    def defaults(self) -> Any:
        return self._build(**{key: spec.default for key, spec in self.fields.items()})


class ListOf(Schema):
    expected = "a list"

    def __init__(self, item: Schema):
        self.item = item

    def accepts(self, node):
        return isinstance(node, yaml.SequenceNode)

    def load(self, node, path, errors):
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return ()
        if not isinstance(node, yaml.SequenceNode):
            errors.add(path, node, "expected a list")
            return None
        return tuple(self.item.load(child, _join(path, i), errors) for i, child in enumerate(node.value))


class MapOf(Schema):
    """A mapping with free string keys (user names, header names), each value checked by ``value``."""

    expected = "a mapping"

    def __init__(self, value: Schema):
        self.value = value

    def accepts(self, node):
        return isinstance(node, yaml.MappingNode)

    def load(self, node, path, errors):
        if isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(node, yaml.MappingNode):
            errors.add(path, node, "expected a mapping")
            return None
        values: Dict[str, Any] = {}
        before = len(errors.problems)
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key_path = _join(path, key)
            if not isinstance(key, str) or not key:
                errors.add(path, key_node, "keys must be non-empty strings")
            elif key in values:
                errors.add(key_path, key_node, "duplicate key")
            else:
                values[key] = self.value.load(value_node, key_path, errors)
        return None if len(errors.problems) > before else values


class Either(Schema):
    """The first alternative whose node kind fits (scalar, mapping or list)."""

    def __init__(self, *alternatives: Schema):
        self.alternatives = alternatives
        self.expected = " or ".join(alt.expected for alt in alternatives)

    def load(self, node, path, errors):
        for alternative in self.alternatives:
            if alternative.accepts(node):
                return alternative.load(node, path, errors)
        errors.add(path, node, "expected %s" % self.expected)
        return None


#: Deepest nesting of lists and mappings a document may have (the configuration needs 4; PyYAML composes
#: recursively, so a thousand levels would end in a RecursionError).
MAX_DEPTH = 64
#: Most nodes a document may have once its aliases are expanded ("billion laughs": nine levels of ten
#: aliases each are a billion nodes, which any reader of the data would walk one by one).
MAX_NODES = 100_000
_CORE = "tag:yaml.org,2002:"
#: Tags of plain data; any other (``!!python/object``, a local ``!tag``) is refused, never constructed.
KNOWN_TAGS = frozenset(_CORE + name for name in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq"))


def _shown(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe composer, with limits: depth, nodes after expanding aliases, plain tags, scalar keys.

    Each refusal is a ``ComposerError`` marked with the line it concerns, so it is reported like a syntax
    error, never as a traceback."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._inner: List[int] = []  # per node being composed: the expanded size of its children so far
        self._sizes: Dict[int, int] = {}  # id(node) -> its size with aliases expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise self._refused("alias *%s is used inside the node it names" % event.anchor, event.start_mark)
            self._count(size, event.start_mark)
            return node
        start = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self._depth >= MAX_DEPTH:
            raise self._refused("nested deeper than %d levels" % MAX_DEPTH, start)
        self._depth += 1
        self._inner.append(0)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            inner = self._inner.pop()
        assert node is not None  # only an alias could be None, and those returned above
        if node.tag not in KNOWN_TAGS:
            raise self._refused("tag %s is not plain data (strings, numbers, booleans, lists, mappings)"
                                % _shown(node.tag), start)
        if isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise self._refused("a mapping key must be a plain value, not a %s"
                                        % ("list" if isinstance(key, yaml.SequenceNode) else "mapping"),
                                        key.start_mark)
        self._sizes[id(node)] = 1 + inner
        self._count(1 + inner, start)
        return node

    def _count(self, size: int, mark) -> None:
        if size > MAX_NODES:
            raise self._refused("more than %d values once its aliases are expanded (an alias bomb?)" % MAX_NODES,
                                mark)
        if self._inner:
            self._inner[-1] += size

    @staticmethod
    def _refused(problem: str, mark) -> yaml.YAMLError:
        return yaml.composer.ComposerError(None, None, "refused: " + problem, mark)


def compose(text: str) -> Optional[yaml.Node]:
    """The document's node tree (None when it is empty), within the limits above; yaml.YAMLError else."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def load_document(text: str, schema: Schema, errors: Errors) -> Any:
    """Checks a YAML document against ``schema``; YAML syntax errors and refused documents are problems too."""
    try:
        node = compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        errors.problems.append(Problem("", line, "invalid YAML: %s" % getattr(exc, "problem", exc)))
        return None
    return schema.load(node, "", errors)
