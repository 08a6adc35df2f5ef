"""The rules file: every Gmail reply of the corpus gets its category, in every shape an MTA logs it."""

from __future__ import annotations

import dataclasses
import gc
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REFUSALS, REPO, CorpusReply
from fixtures.gmail_lookalike import format_reply
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.analyse import SKIP_REASONS, Analyser
from exporter.errors import ConfigError
from exporter.events import Event, Reply
from exporter.metrics import Metrics
from exporter.reply import normalise, squeeze
from exporter.rules import (
    CANDIDATE_CACHE_SIZE,
    CATEGORIES,
    MAX_FILE_BYTES,
    MAX_LIST_ITEMS,
    MAX_PHRASE_CHARS,
    MAX_RULES,
    VERDICT_CACHE_SIZE,
    VERDICT_CACHE_TEXT_CHARS,
    Rule,
    Rules,
    load_rules,
)

RULES = load_rules()

# Rows whose first reply line (all that Sendmail logs) does not say which message it is: Gmail starts
# several 5.7.1/4.7.0 messages with the same "Our system has detected that this message is" line.
FIRST_LINE_AMBIGUOUS = {
    "beyond-30",
    "beyond-31",
    "beyond-32",
    "beyond-35",
    "seed-46",
}


def wire_lines(row: CorpusReply) -> list[str]:
    return format_reply(row, sid="a640c23a62f3a-aac0eff19desi1759812166b.313")


def logged(row: CorpusReply, style: str) -> str:
    lines = wire_lines(row)
    if style == "postfix":
        return " ".join(lines)
    if style == "exim":
        return "\\n".join(lines)
    if style == "opensmtpd":
        rest = [line[4:] for line in lines[1:]]
        if row.enhanced_code and len(row.enhanced_code.rsplit(".", 1)[1]) == 1:
            rest = [line[len(row.enhanced_code) + 1 :] for line in rest]
        return lines[0] + "".join(rest)
    assert style == "sendmail"
    return lines[0].replace("-", " ", 1)


@pytest.mark.parametrize("style", ["postfix", "exim", "opensmtpd"])
@pytest.mark.parametrize("row", REFUSALS, ids=lambda r: r.id)
def test_corpus_reply_gets_its_category(row: CorpusReply, style: str) -> None:
    reply = normalise(logged(row, style))
    assert (reply.code, reply.enhanced_code, reply.origin) == (row.code, row.enhanced_code, row.origin)
    verdict = RULES.classify(reply)
    assert verdict.category == row.category, (verdict, reply.text)
    assert verdict.severity == ("temporary" if row.code.startswith("4") else "permanent")


@pytest.mark.parametrize("row", REFUSALS, ids=lambda r: r.id)
def test_first_line_only_is_right_or_honestly_unclassified(row: CorpusReply) -> None:
    verdict = RULES.classify(normalise(logged(row, "sendmail")))
    if row.id in FIRST_LINE_AMBIGUOUS:
        first_line = wire_lines(row)[0]
        assert (verdict.category, verdict.reason) == ("unclassified", "ambiguous_first_line"), first_line
    else:
        assert verdict.category == row.category, verdict


def test_every_seed_row_is_in_the_corpus() -> None:
    seed = sorted(int(r.id.split("-")[1]) for r in REFUSALS if r.id.startswith("seed-"))
    assert seed == list(range(61))


def test_every_category_has_rules_and_unclassified_only_says_a_first_line_is_ambiguous() -> None:
    used = {rule.category for rule in RULES.rules}
    assert used == set(CATEGORIES)
    unclassified = {rule.reason for rule in RULES.rules if rule.category == "unclassified"}
    assert unclassified == {"ambiguous_first_line"}


def test_unmatched_refusal_is_unclassified_with_its_severity() -> None:
    verdict = RULES.classify(normalise("550 5.7.1 Something Google never said before - gsmtp"))
    assert (verdict.category, verdict.reason, verdict.severity) == ("unclassified", "unknown", "permanent")


def test_no_reply_logged() -> None:
    verdict = RULES.classify(None, fallback_severity="permanent")
    assert (verdict.category, verdict.reason) == ("unclassified", "no_reply_logged")


def test_gcdp_beats_any_wording() -> None:
    reply = normalise(
        "550 5.7.26 Unauthenticated email from x.example is not accepted due to domain's DMARC policy - gcdp a1b2c3.4 - gsmtp"
    )
    assert RULES.classify(reply).category == "policy"


def best_times(*works: Callable[[], object], repeat: int = 7) -> list[float]:
    """The least CPU time of `repeat` runs of each work, run in turn so that a busy moment hits each alike."""
    best = [float("inf")] * len(works)
    for _ in range(repeat):
        for i, work in enumerate(works):
            start = time.process_time()
            work()
            best[i] = min(best[i], time.process_time() - start)
    return best


def test_hostile_text_is_classified_in_linear_time() -> None:
    def hostile(n: int) -> Reply:
        return normalise("550 5.7.1 " + "a" * n + " ptr" * (n // 8))

    short, long = hostile(800), hostile(3200)

    def match(reply: Reply) -> Callable[[], object]:
        return lambda: [RULES.match(reply) for _ in range(50)]

    # Four times the text: four times the work when linear, sixteen when quadratic.
    long_time, short_time = best_times(match(long), match(short))
    assert long_time < 8 * short_time


def test_user_rule_overrides_and_disables(tmp_path: Path) -> None:
    user = tmp_path / "mine.yml"
    user.write_text(
        "rules:\n"
        "  - {reason: our_partner_quota, category: sending_limit, enhanced_code: 5.7.1, phrases: [partner quota]}\n"
        "  - {reason: no_such_user, category: recipient, enhanced_code: 5.1.1, phrases: [does not exist]}\n"
        "disable: [likely_unsolicited]\n"
    )
    rules = load_rules([str(user)])
    assert rules.classify(normalise("550 5.7.1 Partner quota reached - gsmtp")).reason == "our_partner_quota"
    spam = normalise("550 5.7.1 Our system has detected that this message is likely unsolicited mail.")
    assert rules.classify(spam).category == "unclassified"
    assert RULES.classify(spam).category == "spam"


@pytest.mark.parametrize(
    ("content", "line", "key"),
    [
        ("rules:\n  - {reason: x, category: nope, code: 550}\n", 2, "category"),
        ("rules:\n  - reason: x\n    category: spam\n    colour: red\n", 4, "colour"),
        ("rules:\n  - {reason: Bad-Name, category: spam, code: 550}\n", 2, "reason"),
        ("rules:\n  - {reason: x, category: spam, code: 650}\n", 2, "code"),
        ("rules:\n  - {reason: x, category: spam, enhanced_code: 5.7}\n", 2, "enhanced_code"),
        ("rules:\n  - {reason: x, category: spam}\n", 2, "rule"),
        ("rules:\n  - {reason: x, category: spam, phrases: ['a']}\n", 2, "phrases"),
        ("rules:\n  - {reason: x, category: spam, code: 550}\n  - {reason: x, category: ptr, code: 421}\n", 3, "category"),
        ("rules:\n  - {reason: x, category: spam\n", 3, None),
        ("rulez: []\n", 1, "rulez"),
    ],
    ids=["category", "unknown-key", "reason", "code", "enhanced", "matches-all", "short-phrase", "two-categories",
         "yaml-syntax", "top-level"],
)  # fmt: skip
def test_bad_rules_file_names_file_line_and_key(
    tmp_path: Path, content: str, line: int, key: str | None
) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_rules([str(path)])
    err = caught.value
    assert (err.file, err.line, err.key) == (str(path), line, key)
    assert str(err).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize(
    ("disable", "hint"),
    [
        ("[likely_unsolicitd]", " (did you mean likely_unsolicited?)"),
        ("\n  - dmarc_policy\n  - nothing_of_the_kind", f" (they are listed in {RULES.files[-1]})"),
    ],
)
def test_disabling_a_reason_the_bundled_rules_lack_fails_naming_file_line_and_key(
    tmp_path: Path, disable: str, hint: str
) -> None:
    # Disabling a mistyped name would disable nothing, silently.
    path = tmp_path / "mine.yml"
    path.write_text(f"rules: []\ndisable: {disable}\n")
    with pytest.raises(ConfigError) as caught:
        load_rules([str(path)])
    wrong = "likely_unsolicitd" if "likely" in disable else "nothing_of_the_kind"
    line = 2 if "likely" in disable else 4
    assert str(caught.value) == (
        f"{path}:{line}: disable: {wrong!r} is not a reason in the bundled rules{hint}"
    )


def test_shipped_rules_file_is_the_package_data() -> None:
    assert Path(RULES.files[-1]).resolve() == (REPO / "config" / "rules.yml").resolve()


@pytest.mark.parametrize(
    ("reply", "category", "reason"),
    [
        # Wordings of other years, and wordings no rule text knows, that codes or help tokens still classify.
        ("550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary spaces. Learn more at 550 5.1.1 http://mail.google.com/support/bin/answer.py?answer=6596 a1si123.45 - gsmtp", "recipient", "no_such_user"),
        ("421-4.7.0 [192.0.2.1] Our system has detected an unusual rate of 421-4.7.0 unsolicited mail originating from your IP address. To protect our 421-4.7.0 users from spam, mail sent from your IP address has been temporarily 421-4.7.0 blocked. Please visit http://www.google.com/mail/help/bulk_mail.html 421 4.7.0 to review our Bulk Email Senders Guidelines. a1si123.45 - gsmtp", "rate_limit", "ip_unusual_rate"),
        ("421-4.7.0 [192.0.2.1] Our system has detected an unusual amount of unsolicited mail originating from your IP address. 421 4.7.0 b2si1.2 - gsmtp", "rate_limit", "ip_unusual_rate"),
        ("552-5.7.0 Our system detected an illegal attachment on your message. Please 552-5.7.0 visit http://mail.google.com/support/bin/answer.py?answer=6590 to 552 5.7.0 review our attachment guidelines. c3si4.5 - gsmtp", "policy", "blocked_content_security"),
        ("452-4.2.2 The recipient's inbox is out of storage space. Please direct the 452 4.2.2 recipient to https://support.google.com/mail/?p=OverQuotaTemp d4si5.6 - gsmtp", "mailbox_full", "over_quota"),
        ("550-5.7.1 [192.0.2.1 12] Gmail has detected that this message is likely suspicious 550 5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError e5si6.7 - gsmtp", "spam", "likely_unsolicited"),
        ("550-5.7.1 Some future wording about DMARC alignment. 550 5.7.1  https://support.google.com/mail/?p=DmarcRejection f6si7.8 - gsmtp", "authentication", "dmarc_policy"),
        ("421-4.7.28 [192.0.2.1 15] Gmail has detected an unusual rate of unsolicited mail originating 421-4.7.28 from your DKIM domain [example.com 15]. To protect our users from 421 4.7.28 spam, mail has been temporarily rate limited. g7si8.9 - gsmtp", "rate_limit", "domain_unusual_rate"),
        ("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail 550 5.4.5 sending limits go to https://support.google.com/a/answer/166852 h8si9.0 - gsmtp", "sending_limit", "daily_sending_quota"),
        ("550-5.7.26 Your email has been blocked because the sender is unauthenticated. 550 5.7.26 Gmail requires all senders to authenticate. i9si0.1 - gsmtp", "authentication", "unauthenticated_sender"),
    ],
)  # fmt: skip
def test_replies_of_other_years_and_new_wordings(reply: str, category: str, reason: str) -> None:
    verdict = RULES.classify(normalise(reply))
    assert (verdict.category, verdict.reason) == (category, reason)


def test_a_reason_the_rules_accept_is_a_label_and_one_they_refuse_never_loads(tmp_path: Path) -> None:
    longest = "r" * 63
    user = tmp_path / "mine.yml"
    user.write_text(f"rules:\n  - {{reason: {longest}, category: spam, enhanced_code: [5.7.1]}}\n")
    metrics = Metrics(categories=CATEGORIES, skip_reasons=SKIP_REASONS)
    line = (
        b"Nov 29 21:32:49 mx1 postfix/smtp[1]: ABC123: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com"
        b"[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=5.7.1, status=bounced (host gmail-smtp-in.l.google.com"
        b"[192.0.2.7] said: 550 5.7.1 Something new. a1b2c3.4 - gsmtp (in reply to end of DATA command))"
    )
    event = Analyser(load_rules([str(user)])).analyse(line)
    assert isinstance(event, Event)
    metrics.observe(event)
    assert [labels[1] for labels, n in metrics.rejections.items() if n] == [longest]
    for refused in ("r" * 64, "9_lives", "_private"):
        user.write_text(f"rules:\n  - {{reason: {refused}, category: spam, enhanced_code: [5.7.1]}}\n")
        with pytest.raises(ConfigError, match="is not snake_case"):
            load_rules([str(user)])


# ---------------------------------------------------------------- what the runtime can afford


def rules_file(path: Path, rules: list[str], extra: str = "") -> Path:
    """A rules file of flow-style rules, one a line: rule i is on line i + 2."""
    path.write_text("rules:\n" + "".join(f"  - {{{rule}}}\n" for rule in rules) + extra)
    return path


def other_code_rules(count: int) -> list[str]:
    """Rules for enhanced codes Google does not use (subjects 10 to 19), worded like Gmail's replies, so a rule
    taken for a candidate by mistake would win and change a verdict."""
    return [
        f"reason: other_{i}, category: policy, code: [550, 421], enhanced_code: 5.{10 + i // 1000}.{i % 1000}, "
        f"phrases: [unsolicited mail, our system has detected]"
        for i in range(count)
    ]


def code_pair_rules(count: int) -> list[str]:
    """One rule for each of `count` (basic code, enhanced code) pairs: 500-509 x 5.7.0-5.7.999."""
    return [
        f"reason: pair_{i}, category: policy, code: {500 + i // 1000}, enhanced_code: 5.7.{i % 1000}, "
        f"phrases: [pair number {i} here]"
        for i in range(count)
    ]


def code_pair_replies(count: int) -> list[Reply]:
    return [
        normalise(f"{500 + i // 1000} 5.7.{i % 1000} Text {i} of a reply no rule knows - gsmtp")
        for i in range(count)
    ]


def corpus_replies() -> list[Reply]:
    return [
        normalise(logged(row, style))
        for row in REFUSALS
        for style in ("postfix", "exim", "opensmtpd", "sendmail")
    ]


@pytest.fixture(scope="module")
def ten_thousand_rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rules_file(tmp_path_factory.mktemp("rules") / "many.yml", other_code_rules(MAX_RULES))


@pytest.fixture(scope="module")
def ten_thousand_rules(ten_thousand_rules_file: Path) -> Rules:
    rules = load_rules([str(ten_thousand_rules_file)])
    assert len(rules.rules) == MAX_RULES + len(RULES.rules)
    return rules


def verdicts(rules: Rules, replies: list[Reply]) -> list[tuple[str, str, str]]:
    return [(v.category, v.reason, v.severity) for v in map(rules.classify, replies)]


def test_ten_thousand_rules_for_other_codes_classify_the_corpus_like_the_bundled_rules(
    ten_thousand_rules: Rules,
) -> None:
    replies = corpus_replies()
    assert verdicts(ten_thousand_rules, replies) == verdicts(RULES, replies)
    assert ten_thousand_rules.classify(
        normalise("550 5.12.34 Our system has detected unsolicited mail")
    ).reason == ("other_2034")


def test_ten_thousand_rules_for_other_codes_cost_the_corpus_no_more_than_a_little_time(
    ten_thousand_rules: Rules,
) -> None:
    # Each corpus reply in several wordings: more templates than (code, enhanced code) pairs, as in a log.
    replies = [
        dataclasses.replace(r, text=f"{r.text} variant {k}") for r in corpus_replies() for k in range(6)
    ]

    def classify_cold(rules: Rules) -> Callable[[], object]:
        # A fresh Rules each time: every (code, enhanced code) and every template is new to it.
        copies = [Rules(rules.rules, rules.files) for _ in range(5)]
        return lambda: verdicts(copies.pop(), replies)

    many, bundled = best_times(classify_cold(ten_thousand_rules), classify_cold(RULES), repeat=5)
    assert many < 4 * bundled, (many, bundled)


def test_the_caches_stay_at_their_bounds_after_many_distinct_code_pairs(tmp_path: Path) -> None:
    rules = load_rules([str(rules_file(tmp_path / "pairs.yml", code_pair_rules(3 * CANDIDATE_CACHE_SIZE)))])
    replies = code_pair_replies(3 * CANDIDATE_CACHE_SIZE) + [
        normalise(f"550 5.7.1 Template {i} of a log of fake replies") for i in range(VERDICT_CACHE_SIZE + 100)
    ]
    largest = {"verdicts": 0, "candidates": 0}
    for reply in replies:
        rules.classify(reply)
        for cache, size in rules.cache_sizes().items():
            largest[cache] = max(largest[cache], size)
    assert largest == {"verdicts": VERDICT_CACHE_SIZE, "candidates": CANDIDATE_CACHE_SIZE}
    # A reply too long to be a Gmail template is classified without being remembered.
    before = rules.cache_sizes()["verdicts"]
    long = normalise("550 5.7.1 " + "x" * VERDICT_CACHE_TEXT_CHARS + " likely unsolicited")
    assert rules.classify(long).reason == "likely_unsolicited"
    assert rules.cache_sizes()["verdicts"] == before


def test_many_distinct_code_pairs_need_little_more_memory_than_the_bundled_rules(tmp_path: Path) -> None:
    pairs = load_rules([str(rules_file(tmp_path / "pairs.yml", code_pair_rules(3000)))])
    replies = code_pair_replies(3000)

    def peak(rules: Rules) -> int:
        tracemalloc.start()
        try:
            verdicts(rules, replies)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    bundled = peak(Rules(RULES.rules, RULES.files))
    many = peak(pairs)
    assert many < 4 * bundled, (many, bundled)


def test_loading_ten_thousand_rules_never_holds_the_whole_yaml_tree(ten_thousand_rules_file: Path) -> None:
    # A YAML node tree takes about forty times the file's size: composed one rule at a time, loading needs
    # little more memory than the rules it keeps.
    gc.collect()
    tracemalloc.start()
    try:
        rules = load_rules([str(ten_thousand_rules_file)])
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(rules.rules) == MAX_RULES + len(RULES.rules)
    assert peak < 2 * kept, (peak, kept)


def test_a_phrase_longer_than_the_maximum_is_rejected_with_file_line_and_key(tmp_path: Path) -> None:
    fits = rules_file(
        tmp_path / "fits.yml", [f"reason: long_phrase, category: spam, phrases: [{'a' * MAX_PHRASE_CHARS}]"]
    )
    assert [r.phrases for r in load_rules([str(fits)]).rules if r.reason == "long_phrase"] == [
        ("a" * MAX_PHRASE_CHARS,)
    ]
    path = rules_file(
        tmp_path / "long.yml",
        [
            "reason: fine, category: spam, code: 550",
            f"reason: megabyte, category: spam, phrases: [ok phrase, {'b' * 1_000_000}]",
        ],
    )
    with pytest.raises(ConfigError) as caught:
        load_rules([str(path)])
    assert (caught.value.file, caught.value.line, caught.value.key) == (str(path), 3, "phrases")
    assert f"has 1000000 characters; a phrase may have {MAX_PHRASE_CHARS} at most" in str(caught.value)
    assert len(str(caught.value)) < 300


def test_check_rules_rejects_an_over_long_phrase_naming_file_line_and_key(tmp_path: Path) -> None:
    path = rules_file(
        tmp_path / "long.yml", [f"reason: long, category: spam, phrases: [{'c' * (MAX_PHRASE_CHARS + 1)}]"]
    )
    done = subprocess.run(
        [sys.executable, "-m", "exporter", "check-rules", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.decode().startswith(f"gmail-rejection-exporter: {path}:2: phrases: 'ccccc")
    assert f"has {MAX_PHRASE_CHARS + 1} characters" in done.stderr.decode()


def test_more_rules_than_the_maximum_are_rejected_with_file_line_and_key(tmp_path: Path) -> None:
    path = rules_file(tmp_path / "many.yml", other_code_rules(MAX_RULES + 1))
    with pytest.raises(ConfigError) as caught:
        load_rules([str(path)])
    assert (caught.value.file, caught.value.line, caught.value.key) == (str(path), MAX_RULES + 2, "rules")
    assert f"more than {MAX_RULES} rules in the rules files together" in str(caught.value)


def test_the_rule_maximum_counts_every_user_file_together(tmp_path: Path) -> None:
    first = rules_file(tmp_path / "first.yml", other_code_rules(MAX_RULES - 10))
    second = rules_file(tmp_path / "second.yml", other_code_rules(20))
    with pytest.raises(ConfigError) as caught:
        load_rules([str(first), str(second)])
    assert (caught.value.file, caught.value.line, caught.value.key) == (str(second), 12, "rules")


@pytest.mark.parametrize("key", ["code", "enhanced_code", "phrases"])
def test_a_rule_listing_more_than_the_maximum_is_rejected_with_file_line_and_key(
    tmp_path: Path, key: str
) -> None:
    items = {
        "code": [str(500 + i) for i in range(MAX_LIST_ITEMS + 1)],
        "enhanced_code": [f"5.7.{i}" for i in range(MAX_LIST_ITEMS + 1)],
        "phrases": [f"phrase {i}" for i in range(MAX_LIST_ITEMS + 1)],
    }[key]
    lines = "".join(f"      - {item}\n" for item in items)
    path = tmp_path / "list.yml"
    path.write_text(f"rules:\n  - reason: listed\n    category: spam\n    {key}:\n{lines}")
    with pytest.raises(ConfigError) as caught:
        load_rules([str(path)])
    # The first item over the limit: items start on line 5.
    assert (caught.value.file, caught.value.line, caught.value.key) == (str(path), 5 + MAX_LIST_ITEMS, key)
    path.write_text(
        f"rules:\n  - reason: listed\n    category: spam\n    {key}:\n{lines.rsplit('      - ', 1)[0]}"
    )
    assert "listed" in load_rules([str(path)]).reasons


def test_a_rules_file_larger_than_the_maximum_is_rejected_before_it_is_parsed(tmp_path: Path) -> None:
    padding = "# " + "x" * 1021 + "\n"
    path = rules_file(
        tmp_path / "big.yml",
        ["reason: big, category: spam, code: 550"],
        padding * (MAX_FILE_BYTES // 1024 + 1),
    )
    with pytest.raises(ConfigError) as caught:
        load_rules([str(path)])
    assert (caught.value.file, caught.value.line, caught.value.key) == (str(path), None, None)
    assert f"a rules file may have {MAX_FILE_BYTES} at most" in str(caught.value)


CODES = ["421", "450", "550", "554"]
ENHANCED = ["4.7.0", "5.7.1", "5.7.26", "5.1.1"]
WORDS = ["rate", "limit", "spam", "policy", "dmarc", "quota", "user"]


@st.composite
def rule_sets(draw: st.DrawFn) -> list[Rule]:
    rules = []
    for n in range(draw(st.integers(1, 12))):
        codes = draw(st.sets(st.sampled_from([*CODES, "4xx", "5xx"]), max_size=2))
        enhanced = draw(st.sets(st.sampled_from([*ENHANCED, "5.7.", "5.", "4."]), max_size=2))
        rules.append(
            Rule(
                reason=f"r{n}",
                category="spam",
                codes=frozenset(c for c in codes if not c.endswith("xx")),
                code_classes=frozenset(c for c in codes if c.endswith("xx")),
                enhanced=frozenset(e for e in enhanced if not e.endswith(".")),
                enhanced_prefixes=tuple(sorted(e for e in enhanced if e.endswith("."))),
                origin=draw(st.sampled_from([None, None, "gcdp", "gsmtp"])),
                phrases=tuple(draw(st.lists(st.sampled_from(WORDS), max_size=2))),
                source=f"test:{n}",
            )
        )
    return rules


replies = st.builds(
    Reply,
    code=st.sampled_from([*CODES, "551", "421", None]),
    enhanced_code=st.sampled_from([*ENHANCED, "5.7.9", "5.9.9", "4.4.4", None]),
    text=st.lists(st.sampled_from(WORDS), max_size=5).map(" ".join),
    origin=st.sampled_from(["gsmtp", "gcdp"]),
    marked=st.just(True),
)


@settings(max_examples=150, deadline=None)
@given(rule_sets(), st.lists(replies, min_size=1, max_size=10))
def test_the_index_finds_the_winner_a_scan_of_every_rule_finds(
    rules: list[Rule], sample: list[Reply]
) -> None:
    indexed = Rules(rules)
    for reply in sample:
        squeezed = squeeze(reply.text)
        scanned = next(
            (
                rule
                for rule in indexed.rules
                if rule.admits(reply.code, reply.enhanced_code, reply.origin)
                and all(p in squeezed for p in rule.phrases)
            ),
            None,
        )
        assert indexed.match(reply) == scanned
