"""Rules as data: a rules file maps Gmail replies to a category and a stable reason.

A rule matches on the basic code, the enhanced code, Google's origin marker and short phrases. Phrases are
compared in squeezed form (letters and digits only, lower case), so wrapping, case, punctuation and an MTA's
way of joining lines do not matter, and matching is a plain substring search: linear in the reply's length,
with no regular expression for hostile text to explode.

The most specific matching rule wins. Specificity compares, in order: an origin condition (a `- gcdp`
reply is the recipient admin's policy whatever it says), an exact enhanced code over a wildcard one over
none (codes first: Google keeps codes stable and rewords texts), the number of phrases, an exact basic code
over a class (`4xx`) over none. Between equally specific rules the earlier one wins;
user rule files come before the built-in file, so a user rule with the same conditions overrides ours.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final

import yaml

from exporter import yamlfile
from exporter.errors import ConfigError
from exporter.events import Reply, Verdict
from exporter.labels import REASON_SHAPE
from exporter.redact import MASK
from exporter.reply import squeeze

CATEGORIES: Final = (
    "authentication",
    "rate_limit",
    "reputation",
    "spam",
    "ptr",
    "tls",
    "recipient",
    "mailbox_full",
    "message",
    "sending_limit",
    "policy",
    "smtp_auth",
    "relay",
    "protocol",
    "temporary",
    "unclassified",
)
"""The closed category list that dashboards, alerts and `classify` output share."""

UNMATCHED_REASON: Final = "unknown"
"""Reason of a Google refusal that no rule matches (category unclassified)."""
NO_REPLY_REASON: Final = "no_reply_logged"
"""Reason of a refusal the MTA logged without Google's reply (old Sendmail's stat=Service unavailable)."""

_CODE: Final = re.compile(r"[245]\d\d|[245]xx")
_ENHANCED: Final = re.compile(r"[245]\.\d{1,3}\.\d{1,3}|[245]\.\d{1,3}\.\*|[245]\.\*")
_RULE_KEYS: Final = ("reason", "category", "code", "enhanced_code", "origin", "phrases", "comment")
_FILE_KEYS: Final = ("rules", "disable")
_CACHE_SIZE: Final = 8192


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of a rules file."""

    reason: str
    category: str
    codes: frozenset[str]
    code_classes: frozenset[str]
    enhanced: frozenset[str]
    enhanced_prefixes: tuple[str, ...]
    origin: str | None
    phrases: tuple[str, ...]
    """Squeezed phrases; all must occur."""
    source: str
    """file:line, for error messages and `check-rules`."""

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        enhanced = 2 if self.enhanced else 1 if self.enhanced_prefixes else 0
        code = 2 if self.codes else 1 if self.code_classes else 0
        return (self.origin is not None, enhanced, len(self.phrases), code)

    def admits(self, code: str | None, enhanced: str | None, origin: str) -> bool:
        """Whether the conditions other than phrases hold."""
        if self.origin is not None and origin != self.origin:
            return False
        if self.codes or self.code_classes:
            if code is None:
                return False
            if code not in self.codes and f"{code[0]}xx" not in self.code_classes:
                return False
        if self.enhanced or self.enhanced_prefixes:
            if enhanced is None:
                return False
            if enhanced not in self.enhanced and not enhanced.startswith(self.enhanced_prefixes):
                return False
        return True


@dataclass(frozen=True, slots=True)
class _Candidates:
    """The rules whose conditions other than phrases hold for one (code, enhanced code, origin), in order."""

    rules: tuple[Rule, ...]
    any_first: re.Pattern[str] | None
    """Finds any of their first phrases (None when none of them has phrases)."""
    without_phrases: Rule | None
    """The first of them without phrases: the winner when no first phrase occurs."""


class Rules:
    """An ordered set of rules with a cache of verdicts per reply template."""

    def __init__(self, rules: Sequence[Rule], files: Sequence[str] = ()) -> None:
        # Stable sort: most specific first, file order among equals, so the first match is the winner.
        self.rules: tuple[Rule, ...] = tuple(sorted(rules, key=lambda r: r.specificity, reverse=True))
        self.files = tuple(files)
        self.reasons: dict[str, str] = {r.reason: r.category for r in rules}
        self._cache: dict[tuple[str | None, str | None, str, str, str], Verdict] = {}
        # A reply is checked only against the rules whose conditions other than phrases hold for its (code,
        # enhanced code, origin), computed once per such key; an enhanced code that no rule names exactly
        # behaves like any other of its class and subject ('5.7.'), so a log of distinct fake codes shares a
        # few keys. Bounded: cleared when full.
        self._exact_codes = frozenset(code for rule in self.rules for code in rule.enhanced)
        self._candidates: dict[tuple[str | None, str | None, str], _Candidates] = {}
        self._first_phrases: dict[str, re.Pattern[str]] = {}

    def _candidates_for(self, code: str | None, enhanced: str | None, origin: str) -> _Candidates:
        if enhanced is not None and enhanced not in self._exact_codes:
            # Wildcards are 'X.' or 'X.Y.': what an unknown code starts with decides them all.
            enhanced = enhanced[: enhanced.rfind(".") + 1] + "*"
        key = (code, enhanced, origin)
        found = self._candidates.get(key)
        if found is None:
            rules = tuple(rule for rule in self.rules if rule.admits(code, enhanced, origin))
            firsts = sorted({rule.phrases[0] for rule in rules if rule.phrases})
            pattern = "|".join(map(re.escape, firsts))
            any_first = self._first_phrases.get(pattern) if firsts else None
            if firsts and any_first is None:
                any_first = self._first_phrases[pattern] = re.compile(pattern)
            fallback = next((rule for rule in rules if not rule.phrases), None)
            found = _Candidates(rules, any_first, fallback)
            if len(self._candidates) >= _CACHE_SIZE:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def match(self, reply: Reply) -> Rule | None:
        """The winning rule for a reply, or None."""
        candidates = self._candidates_for(reply.code, reply.enhanced_code, reply.origin)
        squeezed = squeeze(reply.text)
        # One regex pass tells whether any candidate's first phrase occurs; most replies new to the cache (a
        # log of fake codes) have none, and then only a candidate without phrases can win.
        if candidates.any_first is not None and candidates.any_first.search(squeezed) is None:
            return candidates.without_phrases
        for rule in candidates.rules:
            for phrase in rule.phrases:
                if phrase not in squeezed:
                    break
            else:
                return rule
        return None

    def guess_category(self, code: str | None, enhanced: str | None) -> str:
        """The category most rules for this enhanced code give, whatever the words (for a rule stub); by the
        code's class when no rule names the enhanced code."""
        found = Counter(
            rule.category
            for rule in self.rules
            if rule.category != "unclassified"
            and (rule.enhanced or rule.enhanced_prefixes)
            and rule.admits(code, enhanced, "gsmtp")
        )
        if found:
            return found.most_common(1)[0][0]
        return "temporary" if (code or enhanced or "5").startswith("4") else "policy"

    def classify(self, reply: Reply | None, *, fallback_severity: str = "permanent") -> Verdict:
        """Category, reason and severity of a refusal; `reply` None means the MTA did not log Google's words."""
        if reply is None:
            return Verdict("unclassified", NO_REPLY_REASON, fallback_severity)
        key = (reply.code, reply.enhanced_code, reply.origin, reply.text, fallback_severity)
        found = self._cache.get(key)
        if found is None:
            rule = self.match(reply)
            category, reason = (rule.category, rule.reason) if rule else ("unclassified", UNMATCHED_REASON)
            # One Verdict per template, shared by its events (events are never changed once made).
            found = Verdict(category, reason, severity_of(reply, fallback_severity))
            if len(self._cache) >= _CACHE_SIZE:  # a real log has a few hundred templates; a hostile one, any
                self._cache.clear()
            self._cache[key] = found
        return found


def rule_stub(rules: Rules, code: str | None, enhanced: str | None, template: str) -> str | None:
    """A rule in this file's syntax, ready to paste under `rules:` of a user's rules file, that matches the replies
    of a template (see redact.template) no rule matches: their codes and the template's first runs of fixed
    words. The category is guessed from the rules for the same codes (a comment says so); None when the template
    gives nothing to match on."""
    phrases = _stub_phrases(template)
    conditions = []
    if code is not None:
        conditions.append(f"code: [{code}]")
    if enhanced is not None:
        conditions.append(f"enhanced_code: [{enhanced}]")
    if phrases:
        conditions.append(f"phrases: [{', '.join(map(json.dumps, phrases))}]")
    if not conditions:
        return None
    codes = (enhanced or code or "").replace(".", "_")
    words = re.findall(r"[a-z]+", " ".join(phrases).lower())[:4]
    reason = "_".join(["gmail", *filter(None, [codes, *words])])[:63].rstrip("_")
    category = rules.guess_category(code, enhanced)
    return (
        f"- {{reason: {reason}, category: {category}, {', '.join(conditions)}}}  # category guessed: check it"
    )


def _stub_phrases(template: str) -> list[str]:
    """The first two runs of fixed words in a template that say something (8 letters or more; the first is what
    Sendmail's first line keeps), else the longest run; each cut at a word to at most 60 characters."""
    runs = [run.strip(_NOT_PHRASE_ENDS) for run in MASK.split(template)]
    runs = [run for run in runs if len(squeeze(run)) >= 3]
    chosen = [run for run in runs if len(squeeze(run)) >= 8][:2]
    if not chosen and runs:
        chosen = [max(runs, key=lambda r: len(squeeze(r)))]
    return [run if len(run) <= 60 else run[:60].rsplit(" ", 1)[0].strip(_NOT_PHRASE_ENDS) for run in chosen]


_NOT_PHRASE_ENDS: Final = " .,;:()[]'\""


def severity_of(reply: Reply, fallback: str) -> str:
    """'temporary' for a 4xx reply, 'permanent' for 5xx: the reply's own code, not what the MTA made of it."""
    first = reply.code[0] if reply.code else reply.enhanced_code[0] if reply.enhanced_code else ""
    if first == "4":
        return "temporary"
    if first == "5":
        return "permanent"
    return fallback


def builtin_rules_path() -> str:
    """Path of the rules file shipped with the package (config/rules.yml in the source tree)."""
    return str(resources.files("exporter").joinpath("data", "rules.yml"))


def load_rules(user_files: Sequence[str] = (), *, builtin: str | None = None) -> Rules:
    """User rule files (in order) then the built-in file; raises ConfigError naming file, line and key."""
    builtin = builtin or builtin_rules_path()
    rules: list[Rule] = []
    disabled: set[str] = set()
    user_rules: list[Rule] = []
    for path in user_files:
        file_rules, file_disabled = _parse_file(path)
        user_rules.extend(file_rules)
        disabled |= file_disabled
    builtin_rules, _ = _parse_file(builtin)
    rules = user_rules + [r for r in builtin_rules if r.reason not in disabled]
    _check_reason_categories(rules)
    return Rules(rules, [*user_files, builtin])


def _check_reason_categories(rules: Sequence[Rule]) -> None:
    seen: dict[str, Rule] = {}
    for rule in rules:
        first = seen.setdefault(rule.reason, rule)
        if first.category != rule.category:
            file, _, line = rule.source.rpartition(":")
            raise ConfigError(
                file,
                int(line),
                "category",
                f"reason {rule.reason!r} is {first.category!r} at {first.source}; "
                "one reason has one category (pick another reason name)",
            )


def _parse_file(path: str) -> tuple[list[Rule], set[str]]:
    root = yamlfile.compose(path)
    if root is None:
        raise ConfigError(path, None, None, "empty rules file: expected a 'rules:' list")
    rules: list[Rule] = []
    disabled: set[str] = set()
    for key, key_node, value in yamlfile.items(path, root, "top level"):
        if key == "rules":
            for item in yamlfile.sequence(path, value, "rules"):
                rules.append(_parse_rule(path, item))
        elif key == "disable":
            for item in yamlfile.sequence(path, value, "disable"):
                disabled.add(yamlfile.scalar(path, item, "disable"))
        else:
            raise ConfigError(
                path,
                yamlfile.line_of(key_node),
                key,
                f"unknown key; expected one of: {', '.join(_FILE_KEYS)}",
            )
    return rules, disabled


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
        return [
            (yamlfile.scalar(path, n, key).strip(), yamlfile.line_of(n))
            for n in yamlfile.sequence(path, fields[key][1], key)
        ]

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
        squeezed = squeeze(value)
        if len(squeezed) < 3:
            raise ConfigError(path, at, "phrases", f"{value!r} is too short to match reliably (3+ letters)")
        phrases.append(squeezed)

    if not (codes or classes or enhanced or prefixes or origin or phrases):
        raise ConfigError(
            path, line, "rule", "matches everything: give a code, enhanced_code, origin or phrases"
        )
    return Rule(
        reason=reason,
        category=category,
        codes=frozenset(codes),
        code_classes=frozenset(classes),
        enhanced=frozenset(enhanced),
        enhanced_prefixes=tuple(prefixes),
        origin=origin,
        phrases=tuple(phrases),
        source=f"{path}:{line}",
    )
