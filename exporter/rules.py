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

What a rules file may ask for is bounded so that a reply always costs little: at most MAX_RULES rules in the
user's files together, MAX_LIST_ITEMS codes, enhanced codes or phrases per rule, MAX_PHRASE_CHARS characters
per phrase and MAX_FILE_BYTES per file. A reply is checked only against the rules its codes can satisfy,
found through an index by code and enhanced code, so rules for other codes cost it nothing.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from exporter import cachefile, patterns
from exporter.categories import CATEGORIES as CATEGORIES  # re-exported: stages import it from here
from exporter.errors import ConfigError, did_you_mean
from exporter.events import Reply, Verdict
from exporter.redact import MASK
from exporter.reply import squeeze

UNMATCHED_REASON: Final = "unknown"
"""Reason of a Google refusal that no rule matches (category unclassified)."""
NO_REPLY_REASON: Final = "no_reply_logged"
"""Reason of a refusal the MTA logged without Google's reply (old Sendmail's stat=Service unavailable)."""

_CODE: Final = patterns.compile(r"[245]\d\d|[245]xx")
_ENHANCED: Final = patterns.compile(r"[245]\.\d{1,3}\.\d{1,3}|[245]\.\d{1,3}\.\*|[245]\.\*")
_RULE_KEYS: Final = ("reason", "category", "code", "enhanced_code", "origin", "phrases", "comment")
_FILE_KEYS: Final = ("rules", "disable")

MAX_RULES: Final = 10_000
"""Rules in the user's rules files together (the bundled file holds a few hundred of its own)."""
MAX_LIST_ITEMS: Final = 20
"""Codes, enhanced codes or phrases one rule may list."""
MAX_PHRASE_CHARS: Final = 200
"""Characters of one phrase as written: a short stable part of Google's words, never a whole message."""
MAX_FILE_BYTES: Final = 8 * 1024 * 1024
"""Size of one rules file: checked before the file is parsed."""
VERDICT_CACHE_SIZE: Final = 4096
"""Verdicts remembered per reply template (a real log has a few hundred); the cache is emptied when full."""
VERDICT_CACHE_TEXT_CHARS: Final = 1024
"""Longer reply texts (Gmail's longest have about 600 characters) are classified without being remembered, so
the verdict cache holds at most VERDICT_CACHE_SIZE * VERDICT_CACHE_TEXT_CHARS characters of text."""
CANDIDATE_CACHE_SIZE: Final = 1024
"""Candidate lists remembered per (code, enhanced code, origin); the cache is emptied when full."""


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

    @classmethod
    def of(
        cls,
        path: str,
        reason: str,
        category: str,
        codes: Iterable[str],
        code_classes: Iterable[str],
        enhanced: Iterable[str],
        enhanced_prefixes: Iterable[str],
        origin: str | None,
        phrases: Iterable[str],
        line: int,
    ) -> Rule:
        """The rule a rules file states at `path`:`line`, from what it lists (a cached row of the bundled file is
        these arguments after the path, in order)."""
        return cls(
            reason=reason,
            category=category,
            codes=frozenset(codes),
            code_classes=frozenset(code_classes),
            enhanced=frozenset(enhanced),
            enhanced_prefixes=tuple(enhanced_prefixes),
            origin=origin,
            phrases=tuple(phrases),
            source=f"{path}:{line}",
        )

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


_Check = tuple[str, tuple[str, ...], Rule]
"""A candidate rule as match() tests it: its first phrase ("" when it has none), its other phrases, the rule."""


class Rules:
    """An ordered set of rules with bounded caches of verdicts per reply template."""

    def __init__(self, rules: Sequence[Rule], files: Sequence[str] = ()) -> None:
        # Stable sort: most specific first, file order among equals, so the first match is the winner.
        self.rules: tuple[Rule, ...] = tuple(sorted(rules, key=lambda r: r.specificity, reverse=True))
        self.files = tuple(files)
        self.reasons: dict[str, str] = {r.reason: r.category for r in rules}
        self._verdicts: dict[tuple[str | None, str | None, str, str, str], Verdict] = {}
        # A reply is checked only against the rules whose conditions other than phrases hold for its (code,
        # enhanced code, origin), computed once per such key from an index. A code that no rule names exactly
        # behaves like any other of its class ('5xx', '5.7.*'), so a log of distinct fake codes shares a few keys.
        self._named_codes = frozenset(code for rule in self.rules for code in rule.codes)
        self._named_enhanced = frozenset(code for rule in self.rules for code in rule.enhanced)
        self._index = _index(self.rules)
        self._checks: tuple[_Check, ...] = tuple(
            (r.phrases[0] if r.phrases else "", r.phrases[1:], r) for r in self.rules
        )
        self._candidates: dict[tuple[str | None, str | None, str], tuple[_Check, ...]] = {}

    def _candidates_for(self, code: str | None, enhanced: str | None, origin: str) -> tuple[_Check, ...]:
        """The rules a reply with these codes and origin is checked against, in order, each as its first phrase
        ("" when it has none), its other phrases and itself."""
        if code is not None and code not in self._named_codes:
            code = code[:1] + "xx"
        if enhanced is not None and enhanced not in self._named_enhanced:
            # Wildcards are 'X.' or 'X.Y.': what an unknown code starts with decides them all.
            enhanced = enhanced[: enhanced.rfind(".") + 1] + "*"
        key = (code, enhanced, origin)
        found = self._candidates.get(key)
        if found is None:
            index = self._index
            positions = set(index.get(None, ()))
            if code is not None:
                positions.update(index.get(code, ()), index.get(code[:1] + "xx", ()))
            if enhanced is not None:
                subject = enhanced[: enhanced.find(".", 2) + 1]
                positions.update(index.get(enhanced, ()), index.get(enhanced[:2], ()), index.get(subject, ()))
            rules = self.rules
            checks = self._checks
            found = tuple(checks[i] for i in sorted(positions) if rules[i].admits(code, enhanced, origin))
            if len(self._candidates) >= CANDIDATE_CACHE_SIZE:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def match(self, reply: Reply) -> Rule | None:
        """The winning rule for a reply, or None."""
        squeezed = squeeze(reply.text)
        # Most rules have one phrase, most replies hold none of a code's phrases: one test per rule.
        for first, others, rule in self._candidates_for(reply.code, reply.enhanced_code, reply.origin):
            if first in squeezed:
                for phrase in others:
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
        found = self._verdicts.get(key)
        if found is None:
            rule = self.match(reply)
            category, reason = (rule.category, rule.reason) if rule else ("unclassified", UNMATCHED_REASON)
            # One Verdict per template, shared by its events (events are never changed once made).
            found = Verdict(category, reason, severity_of(reply, fallback_severity))
            if len(reply.text) <= VERDICT_CACHE_TEXT_CHARS:
                if len(self._verdicts) >= VERDICT_CACHE_SIZE:  # a real log has a few hundred templates
                    self._verdicts.clear()
                self._verdicts[key] = found
        return found

    def cache_sizes(self) -> dict[str, int]:
        """Entries in the bounded caches: verdicts (at most VERDICT_CACHE_SIZE) and candidate lists (at most
        CANDIDATE_CACHE_SIZE)."""
        return {"verdicts": len(self._verdicts), "candidates": len(self._candidates)}


def _index(rules: Sequence[Rule]) -> dict[str | None, list[int]]:
    """Positions of the rules under the codes that can admit a reply: each rule under its enhanced codes and
    wildcard prefixes ('5.7.26', '5.7.', '5.') when it has any, else under its basic codes and classes ('550',
    '5xx'), else under None (rules that any code can satisfy)."""
    index: dict[str | None, list[int]] = {}
    for position, rule in enumerate(rules):
        keys: list[str | None]
        if rule.enhanced or rule.enhanced_prefixes:
            keys = [*rule.enhanced, *rule.enhanced_prefixes]
        elif rule.codes or rule.code_classes:
            keys = [*rule.codes, *rule.code_classes]
        else:
            keys = [None]
        for key in keys:
            index.setdefault(key, []).append(position)
    return index


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
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "rules.yml")


def load_rules(user_files: Sequence[str] = (), *, builtin: str | None = None) -> Rules:
    """User rule files (in order) then the built-in file; raises ConfigError naming file, line and key."""
    builtin = builtin or builtin_rules_path()
    rules: list[Rule] = []
    disabled: list[tuple[str, str, int]] = []
    user_rules: list[Rule] = []
    for path in user_files:
        from exporter.rulesfile import parse_file  # PyYAML, imported only for a file to parse

        file_rules, file_disabled = parse_file(path, MAX_RULES - len(user_rules))
        user_rules.extend(file_rules)
        disabled.extend((reason, path, line) for reason, line in file_disabled)
    builtin_rules = _bundled(builtin)
    builtin_reasons = {r.reason for r in builtin_rules}
    for reason, path, line in disabled:
        if reason not in builtin_reasons:
            # A mistyped name would disable nothing, silently.
            raise ConfigError(
                path,
                line,
                "disable",
                f"{reason!r} is not a reason in the bundled rules"
                + (did_you_mean(reason, sorted(builtin_reasons)) or f" (they are listed in {builtin})"),
            )
    dropped = {reason for reason, _, _ in disabled}
    rules = user_rules + [r for r in builtin_rules if r.reason not in dropped]
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


_CACHE_VERSION: Final = 1


def _bundled(path: str) -> list[Rule]:
    """The rules of the bundled file: as the last parse of the same bytes left them in the `__pycache__` folder
    beside it (PyYAML's import and parse are a fifth of a command's start), else parsed and left there when the
    folder can be written. The cache is keyed by the file's length and CRC and checked field by field; anything
    else in its place is ignored."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError:
        data = b""  # parsing it says why it cannot be read
    key = f"{_CACHE_VERSION}:{len(data)}:{zlib.crc32(data):08x}"
    cache = os.path.join(os.path.dirname(path), "__pycache__", os.path.basename(path) + ".json")
    found = _cached(cache, key, path) if data else None
    if found is not None:
        return found
    from exporter.rulesfile import parse_file

    rules, _ = parse_file(path, MAX_RULES)
    if data:
        _keep(cache, key, rules)
    return rules


def _cached(cache: str, key: str, path: str) -> list[Rule] | None:
    try:
        with open(cache, encoding="utf-8") as handle:
            saved = json.load(handle)
        if not isinstance(saved, dict) or saved.get("key") != key or not isinstance(saved.get("rules"), list):
            return None
        return [_rule_of(row, path) for row in saved["rules"]]
    except (OSError, ValueError, TypeError):
        return None


def _rule_of(row: Any, path: str) -> Rule:
    """A Rule from a cached row; TypeError when the row is not one."""
    if not isinstance(row, list) or len(row) != 9:
        raise TypeError("not a cached rule")
    reason, category, codes, classes, enhanced, prefixes, origin, phrases, line = row
    texts = [codes, classes, enhanced, prefixes, phrases]
    if not (
        isinstance(reason, str)
        and category in CATEGORIES
        and (origin is None or isinstance(origin, str))
        and isinstance(line, int)
        and all(isinstance(t, list) and all(isinstance(x, str) for x in t) for t in texts)
    ):
        raise TypeError("not a cached rule")
    return Rule.of(path, *row)


def _keep(cache: str, key: str, rules: Sequence[Rule]) -> None:
    rows = [
        [
            r.reason,
            r.category,
            sorted(r.codes),
            sorted(r.code_classes),
            sorted(r.enhanced),
            list(r.enhanced_prefixes),
            r.origin,
            list(r.phrases),
            int(r.source.rpartition(":")[2]),
        ]
        for r in rules
    ]
    cachefile.keep(cache, json.dumps({"key": key, "rules": rows}).encode())
