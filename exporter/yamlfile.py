"""YAML read as a node tree, so that every error can name the file, line and key at fault."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from exporter.errors import ConfigError

_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it (its wheels are): it parses in C, PyYAML's own in Python."""


def compose(path: str) -> yaml.Node | None:
    """Parse a YAML file into nodes that remember their line; syntax errors become ConfigError."""
    try:
        with open(path, encoding="utf-8") as handle:
            try:
                return yaml.compose(handle, Loader=_FAST_LOADER)
            except yaml.YAMLError:
                # Said again by PyYAML's own parser, whose wording is the one users see and tests pin.
                handle.seek(0)
                return yaml.compose(handle, Loader=yaml.SafeLoader)
    except OSError as err:
        raise ConfigError(path, None, None, f"cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(path, None, None, "not UTF-8 text") from err
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, line, None, f"invalid YAML: {err.problem or err.context}") from err
    except yaml.YAMLError as err:
        raise ConfigError(path, None, None, f"invalid YAML: {err}") from err


def line_of(node: yaml.Node) -> int:
    """1-based line where a node starts."""
    return int(node.start_mark.line) + 1


def items(path: str, node: yaml.Node, where: str) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    """(key, key node, value node) of a mapping node; anything else is a ConfigError."""
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(path, line_of(node), where, "expected a mapping (key: value)")
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in seen:
            raise ConfigError(path, line_of(key_node), key, "duplicate key")
        seen.add(key)
        yield key, key_node, value_node


def sequence(path: str, node: yaml.Node, where: str) -> list[yaml.Node]:
    """Items of a sequence node; a single scalar counts as a one-item list."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.ScalarNode):
        return [node]
    raise ConfigError(path, line_of(node), where, "expected a list")


def scalar(path: str, node: yaml.Node, where: str) -> str:
    """The text of a scalar node; mappings and lists are a ConfigError."""
    if not isinstance(node, yaml.ScalarNode):
        raise ConfigError(path, line_of(node), where, "expected a single value")
    return str(node.value)
