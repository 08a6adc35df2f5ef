"""The normaliser on every shape in which an MTA logs Gmail's multi-line replies."""

from __future__ import annotations

import pytest

from exporter.reply import normalise, squeeze

TEXT = (
    "This message does not have authentication information or fails to pass authentication checks "
    "(SPF or DKIM). To best protect our users from spam, the message has been blocked."
)


@pytest.mark.parametrize(
    "raw",
    [
        # Postfix: lines joined with a space, every continuation keeps its prefix, doubled spaces.
        "550-5.7.26 This message does not have authentication information or fails 550-5.7.26 to pass "
        "authentication checks (SPF or DKIM). To best protect 550-5.7.26  our users from spam, the "
        "message has been blocked. 550 5.7.26 q16si3475662wrs.311 - gsmtp (in reply to end of DATA command)",
        # Exim: literal backslash-n joins.
        "550-5.7.26 This message does not have authentication information or fails\\n550-5.7.26 to pass "
        "authentication checks (SPF or DKIM). To best protect\\n550-5.7.26 our users from spam, the "
        "message has been blocked.\\n550 5.7.26 du14-20020a17090772ce00b00780ec98afafsi1640581ejc.113 - gsmtp",
        # OpenSMTPD: later prefixes dropped, a multi-digit enhanced code glued to the previous word.
        "550-5.7.26 This message does not have authentication information or fails5.7.26 to pass "
        "authentication checks (SPF or DKIM). To best protect5.7.26 our users from spam, the message "
        "has been blocked. m7xvppa0nkn67z99e41i.733 - gsmtp",
        # Real CRLF joins (JSON event logs decoded).
        "550-5.7.26 This message does not have authentication information or fails\r\n550-5.7.26 to pass "
        "authentication checks (SPF or DKIM). To best protect\r\n550-5.7.26 our users from spam, the "
        "message has been blocked.\r\n550 5.7.26 a640c23a62f3a-aac0eff19desi1759812166b.313 - gsmtp",
    ],
    ids=["postfix", "exim", "opensmtpd", "crlf"],
)
def test_every_join_style_gives_the_same_reply(raw: str) -> None:
    reply = normalise(raw)
    assert (reply.code, reply.enhanced_code, reply.origin, reply.marked) == ("550", "5.7.26", "gsmtp", True)
    assert reply.text == TEXT


def test_postfix_sasl_question_mark_join() -> None:
    reply = normalise(
        "535-5.7.8 Username and Password not accepted. For more information, go to?535 5.7.8  "
        "https://support.google.com/mail/?p=BadCredentials q16si3475662wrs.311 - gsmtp"
    )
    assert (reply.code, reply.enhanced_code) == ("535", "5.7.8")
    assert reply.text == (
        "Username and Password not accepted. For more information, go to "
        "https://support.google.com/mail/?p=BadCredentials"
    )


def test_opensmtpd_one_digit_code_dropped_with_its_prefix_glues_words() -> None:
    reply = normalise(
        "550-5.7.1 Our system has detected that this message islikely unsolicited mail. abc123.4 - gsmtp"
    )
    assert (reply.code, reply.enhanced_code) == ("550", "5.7.1")
    assert "likelyunsolicited" in squeeze(reply.text)


def test_sendmail_first_line_only_without_marker() -> None:
    reply = normalise("550 5.7.26 This message does not have authentication information or fails")
    assert reply == reply.__class__(
        code="550",
        enhanced_code="5.7.26",
        text="This message does not have authentication information or fails",
        origin="gsmtp",
        marked=False,
    )


def test_gcdp_marker_sets_origin_and_is_removed() -> None:
    reply = normalise(
        "550 5.7.1 This message violates example.com email policy. - gcdp "
        "a640c23a62f3a-aac0eff19desi1759812166b.313 - gsmtp"
    )
    assert (reply.origin, reply.text) == ("gcdp", "This message violates example.com email policy.")


def test_masked_enhanced_code() -> None:
    reply = normalise("421-x.x.xx Service not available, 421 x.x.xx closing transmission channel - gsmtp")
    assert (reply.code, reply.enhanced_code) == ("421", None)
    assert reply.text == "Service not available, closing transmission channel"


def test_reply_without_enhanced_code() -> None:
    reply = normalise("421-Service temporarily unavailable 421 try again later xy12ab.3 - gsmtp")
    assert (reply.code, reply.enhanced_code, reply.text) == (
        "421",
        None,
        "Service temporarily unavailable try again later",
    )


def test_reply_without_any_marker_keeps_last_word() -> None:
    reply = normalise("550 5.1.1 The email account that you tried to reach does not exist")
    assert reply.text.endswith("does not exist")
    assert not reply.marked


def test_enhanced_code_leading_zeros_are_canonical() -> None:
    assert normalise("550 5.07.026 Whatever - gsmtp").enhanced_code == "5.7.26"


def test_session_id_without_digit_is_text() -> None:
    assert normalise("550 5.7.1 blocked by policy - gsmtp").text == "blocked by policy"


@pytest.mark.parametrize("raw", ["", "-", "gsmtp", " - gsmtp", "\x00\xff", "9999", "550", "550-"])
def test_degenerate_input(raw: str) -> None:
    reply = normalise(raw)
    assert reply.enhanced_code is None
