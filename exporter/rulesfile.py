"""Reading a rules file (YAML) into rules: every error names the file, line and key at fault."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import cast

import yaml

from exporter import yamlfile
from exporter.categories import CATEGORIES
from exporter.errors import ConfigError
from exporter.labels import REASON_SHAPE
from exporter.reply import squeeze
from exporter.rules import (
    _CODE,
    _ENHANCED,
    _FILE_KEYS,
    _RULE_KEYS,
    MAX_FILE_BYTES,
    MAX_LIST_ITEMS,
    MAX_PHRASE_CHARS,
    MAX_RULES,
    Rule,
)


def parse_file(path: str, room: int) -> tuple[list[Rule], list[tuple[str, int]]]:
    """The rules and disabled reasons (with their lines) of one file, which may hold `room` rules at most."""
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # reading it says why it cannot be read
    if size > MAX_FILE_BYTES:
        raise ConfigError(path, None, None, f"{size} bytes; a rules file may have {MAX_FILE_BYTES} at most")
    rules: list[Rule] = []
    disabled: list[tuple[str, int]] = []
    try:
        with open(path, encoding="utf-8") as handle:
            reader = _NodeReader(yaml.parse(handle, Loader=yamlfile._FAST_LOADER))
            for key, items in reader.top_level(path):
                if key == "rules":
                    for item in items:
                        if len(rules) == room:
                            raise ConfigError(
                                path,
                                yamlfile.line_of(item),
                                "rules",
                                f"more than {MAX_RULES} rules in the rules files together; "
                                "merge rules that share codes, or drop some",
                            )
                        rules.append(_parse_rule(path, item))
                else:
                    disabled.extend(
                        (yamlfile.scalar(path, item, "disable").strip(), yamlfile.line_of(item))
                        for item in items
                    )
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise _unusable(path) from None
    return rules, disabled


def _unusable(path: str) -> ConfigError:
    """What is wrong with a file that cannot be read or parsed, as the config files say it."""
    try:
        yamlfile.compose(path)
    except ConfigError as err:
        return err
    return ConfigError(path, None, None, "invalid YAML")


class _NodeReader:
    """A rules file's YAML nodes, composed from the parser's events one rule at a time: the whole tree of a large
    file takes many times its size in memory, and the rules are checked one by one anyway."""

    def __init__(self, events: Iterator[yaml.Event]) -> None:
        self._events = events
        self._anchors: dict[str, yaml.Node] = {}

    def top_level(self, path: str) -> Iterator[tuple[str, Iterator[yaml.Node]]]:
        """('rules' or 'disable', its items) for each top-level key; any other key is a ConfigError."""
        next(self._events)  # the stream's start
        if isinstance(next(self._events), yaml.StreamEndEvent):
            raise ConfigError(path, None, None, "empty rules file: expected a 'rules:' list")
        first = next(self._events)  # after the document's start
        if not isinstance(first, yaml.MappingStartEvent):
            for _ in yamlfile.items(path, self.node(first), "top level"):  # says it is not a mapping
                pass
        seen: set[str] = set()
        for event in self._until(yaml.MappingEndEvent):
            key_node = self.node(event)
            key = str(key_node.value)
            if key in seen:
                raise ConfigError(path, yamlfile.line_of(key_node), key, "duplicate key")
            if key not in _FILE_KEYS:
                raise ConfigError(
                    path,
                    yamlfile.line_of(key_node),
                    key,
                    f"unknown key; expected one of: {', '.join(_FILE_KEYS)}",
                )
            seen.add(key)
            value = next(self._events)
            if isinstance(value, yaml.SequenceStartEvent) and value.anchor is None:
                items = self._until(yaml.SequenceEndEvent)
                yield key, map(self.node, items)
                for _ in items:  # what the caller left
                    pass
            else:
                yield key, iter(yamlfile.sequence(path, self.node(value), key))
        next(self._events)  # the document's end
        if not isinstance(next(self._events), yaml.StreamEndEvent):
            raise yaml.YAMLError("expected a single document in the stream")

    def node(self, first: yaml.Event) -> yaml.Node:
        """The node that starts with event `first`, composed from the events that follow it."""
        if isinstance(first, yaml.AliasEvent):
            if first.anchor not in self._anchors:
                raise yaml.YAMLError(f"found undefined alias {first.anchor!r}")
            return self._anchors[first.anchor]
        node: yaml.Node
        # libyaml's marks have the attributes of PyYAML's, which the stubs do not know.
        start, end = cast(yaml.Mark, first.start_mark), cast(yaml.Mark, first.end_mark)
        if isinstance(first, yaml.ScalarEvent):
            node = yaml.ScalarNode("tag:yaml.org,2002:str", first.value, start, end)
        elif isinstance(first, yaml.SequenceStartEvent):
            node = yaml.SequenceNode("tag:yaml.org,2002:seq", [], start, end)
        elif isinstance(first, yaml.MappingStartEvent):
            node = yaml.MappingNode("tag:yaml.org,2002:map", [], start, end)
        else:
            raise yaml.YAMLError(f"unexpected {first}")
        if first.anchor is not None:
            self._anchors[first.anchor] = node
        if isinstance(first, yaml.SequenceStartEvent):
            node.value.extend(map(self.node, self._until(yaml.SequenceEndEvent)))
        elif isinstance(first, yaml.MappingStartEvent):
            for event in self._until(yaml.MappingEndEvent):
                node.value.append((self.node(event), self.node(next(self._events))))
        return node

    def _until(self, end: type[yaml.Event]) -> Iterator[yaml.Event]:
        """The next events, up to one of type `end` (consumed, not given)."""
        while not isinstance(event := next(self._events), end):
            yield event


def _parse_rule(path: str, node: yaml.Node) -> Rule:
    line = yamlfile.line_of(node)
    fields: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, key_node, value_node in yamlfile.items(path, node, "rule"):
        if key not in _RULE_KEYS:
            raise ConfigError(
                path,
                yamlfile.line_of(key_node),
                key,
                f"unknown rule key; expected one of: {', '.join(_RULE_KEYS)}",
            )
        fields[key] = (key_node, value_node)

    def text(key: str) -> str | None:
        if key not in fields:
            return None
        return yamlfile.scalar(path, fields[key][1], key).strip()

    def texts(key: str) -> list[tuple[str, int]]:
        if key not in fields:
            return []
        nodes = yamlfile.sequence(path, fields[key][1], key)
        if len(nodes) > MAX_LIST_ITEMS:
            raise ConfigError(
                path,
                yamlfile.line_of(nodes[MAX_LIST_ITEMS]),
                key,
                f"{len(nodes)} items; a rule may list {MAX_LIST_ITEMS} at most (split it into several rules)",
            )
        return [(yamlfile.scalar(path, n, key).strip(), yamlfile.line_of(n)) for n in nodes]

    reason = text("reason")
    if not reason:
        raise ConfigError(path, line, "reason", "every rule needs a reason (snake_case, e.g. dmarc_policy)")
    if not REASON_SHAPE.fullmatch(reason):
        raise ConfigError(
            path,
            yamlfile.line_of(fields["reason"][1]),
            "reason",
            f"{reason!r} is not snake_case (a-z, 0-9, _, from a letter on, at most 63 characters)",
        )
    category = text("category")
    if category is None:
        raise ConfigError(path, line, "category", f"missing; one of: {', '.join(CATEGORIES)}")
    if category not in CATEGORIES:
        raise ConfigError(
            path,
            yamlfile.line_of(fields["category"][1]),
            "category",
            f"{category!r} is not a category; one of: {', '.join(CATEGORIES)}",
        )

    codes: set[str] = set()
    classes: set[str] = set()
    for value, at in texts("code"):
        value = value.lower()
        if not _CODE.fullmatch(value):
            raise ConfigError(
                path, at, "code", f"{value!r} is not a basic SMTP code like 550 or a class like 4xx"
            )
        (classes if value.endswith("xx") else codes).add(value)

    enhanced: set[str] = set()
    prefixes: list[str] = []
    for value, at in texts("enhanced_code"):
        if not _ENHANCED.fullmatch(value):
            raise ConfigError(
                path, at, "enhanced_code", f"{value!r} is not an enhanced code like 5.7.26, 5.7.* or 5.*"
            )
        if value.endswith("*"):
            prefixes.append(value[:-1])
        else:
            enhanced.add(".".join(str(int(part)) for part in value.split(".")))

    origin = text("origin")
    if origin is not None and origin not in ("gsmtp", "gcdp"):
        raise ConfigError(path, yamlfile.line_of(fields["origin"][1]), "origin", "must be gsmtp or gcdp")

    phrases: list[str] = []
    for value, at in texts("phrases"):
        if len(value) > MAX_PHRASE_CHARS:
            raise ConfigError(
                path,
                at,
                "phrases",
                f"{value[:30]!r}... has {len(value)} characters; a phrase may have {MAX_PHRASE_CHARS} at most "
                "(a short stable part of Google's words)",
            )
        squeezed = squeeze(value)
        if len(squeezed) < 3:
            raise ConfigError(path, at, "phrases", f"{value!r} is too short to match reliably (3+ letters)")
        phrases.append(squeezed)

    if not (codes or classes or enhanced or prefixes or origin or phrases):
        raise ConfigError(
            path, line, "rule", "matches everything: give a code, enhanced_code, origin or phrases"
        )
    return Rule.of(path, reason, category, codes, classes, enhanced, prefixes, origin, phrases, line)
