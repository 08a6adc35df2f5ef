"""Queue listings of any size in each MTA's format, generated as a stream of chunks (never held whole), in the
shapes the real daemons wrote (tests/fixtures/queues): for the queue reader's bench and its bounded-memory test.

Each message has one recipient; by message number it waits for Gmail's rate limit (half), for a mailbox-full
reply, after a refused connection to a Google MX, not yet tried at gmail.com, or at another domain. So of every 10
messages: 5 rate_limit, 2 mailbox_full, 1 refused, 1 not_tried, 1 not bound for Google."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Final

MTAS: Final = ("postfix", "exim", "sendmail", "opensmtpd")
START: Final = 1_700_000_000
"""Arrival of message 0; message i arrives i seconds later."""
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RATE = "450-4.2.1 The user you are trying to contact is receiving mail too 450 4.2.1 quickly."
FULL = "452-4.2.2 The email account that you tried to reach is over quota. 452 4.2.2 Please direct the recipient."


_KINDS: Final = ("rate_limit",) * 5 + ("mailbox_full",) * 2 + ("refused", "not_tried", "elsewhere")


def expected(mta: str, messages: int) -> dict[str, int]:
    """What a listing of `messages` holds for Google: recipients by category or unanswered kind. OpenSMTPD's queue
    says 'Network error on destination MXs' for a refused connection: kind other."""
    counts = {"rate_limit": 0, "mailbox_full": 0, "refused": 0, "not_tried": 0}
    for i in range(min(messages, 10)):
        kind = _KINDS[i]
        if kind in counts:
            counts[kind] += messages // 10 + (1 if i < messages % 10 else 0)
    if mta == "opensmtpd":
        counts["other"] = counts.pop("refused")
    return counts


def _kind(i: int) -> str:
    return _KINDS[i % 10]


def _session(i: int, distinct: bool) -> str:
    return f"a{i}si{i * 7919 % 10_000_000}wrs.{i % 1000}" if distinct else "a1si2wrs.3"


def _reply(i: int, distinct: bool) -> str:
    return f"{RATE if _kind(i) == 'rate_limit' else FULL} {_session(i, distinct)} - gsmtp"


def _address(i: int) -> str:
    return f"user{i}@other.example" if _kind(i) == "elsewhere" else f"user{i}@gmail.com"


def _chunks(lines: Iterator[str]) -> Iterator[bytes]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= 512:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


def postfix(messages: int, *, distinct: bool = True) -> Iterator[bytes]:
    return _chunks(_postfix_lines(messages, distinct))


def _postfix_lines(messages: int, distinct: bool) -> Iterator[str]:
    for i in range(messages):
        kind = _kind(i)
        rcpt: dict[str, str] = {"address": _address(i)}
        if kind in ("rate_limit", "mailbox_full"):
            said = f"host gmail-smtp-in.l.google.com[192.0.2.2] said: {_reply(i, distinct)}"
            rcpt["delay_reason"] = f"{said} (in reply to RCPT TO command)"
        elif kind == "refused":
            rcpt["delay_reason"] = "connect to gmail-smtp-in.l.google.com[192.0.2.2]:25: Connection refused"
        elif kind == "elsewhere":
            rcpt["delay_reason"] = "connect to mx.other.example[192.0.2.9]:25: Connection refused"
        entry = {
            "queue_name": "active" if kind == "not_tried" else "deferred",
            "queue_id": f"{i:012X}",
            "arrival_time": START + i,
            "message_size": 306,
            "forced_expire": False,
            "sender": "news@example.org",
            "recipients": [rcpt],
        }
        yield json.dumps(entry) + "\n"


def exim_id(i: int) -> str:
    """Exim 4.96's id: arrival time and (here) the message number, base 62."""
    return f"{_b62(START + i, 6)}-{_b62(i, 6)}-00"


def _b62(value: int, width: int) -> str:
    out = ""
    for _ in range(width):
        value, digit = divmod(value, 62)
        out = _BASE62[digit] + out
    return out


def exim(messages: int, *, now: float | None = None) -> Iterator[bytes]:
    """`exim -bpr`; the message logs come from exim_msglog()."""
    now = START + messages if now is None else now
    return _chunks(_exim_lines(messages, now))


def _exim_lines(messages: int, now: float) -> Iterator[str]:
    for i in range(messages):
        age = max(0, int(now - (START + i)) // 60)
        yield f"{age:>3}m   379 {exim_id(i)} <news@example.org>\n          {_address(i)}\n\n"


def exim_msglog(message_id: str, *, distinct: bool = True) -> bytes | None:
    """The message log of a generated Exim message."""
    i = _index_of(message_id)
    kind, rcpt = _kind(i), _address(i)
    lines = [f"2023-11-14 22:13:20 Received from news@example.org U=root P=local S=379 id={i}@example.org"]
    if kind in ("rate_limit", "mailbox_full"):
        lines.append(
            f"2023-11-14 22:13:20 {rcpt} R=google T=remote_smtp defer (-44) H=gmail-smtp-in.l.google.com "
            f"[192.0.2.2] DT=0.000s: SMTP error from remote mail server after RCPT TO:<{rcpt}>: "
            + _reply(i, distinct).replace(" 4", "\\n4", 1)
        )
    elif kind in ("refused", "elsewhere"):
        host = "gmail-smtp-in.l.google.com" if kind == "refused" else "mx.other.example"
        lines.append(f"2023-11-14 22:13:20 H={host} [192.0.2.2] Connection refused")
        lines.append(
            f"2023-11-14 22:13:20 {rcpt} R=google T=remote_smtp defer (111): Connection refused DT=0s"
        )
    return ("\n".join(lines) + "\n").encode()


def _index_of(message_id: str) -> int:
    value = 0
    for char in message_id[7:13]:
        value = value * 62 + _BASE62.index(char)
    return value


def sendmail(messages: int, *, distinct: bool = True) -> Iterator[bytes]:
    """`mailq -v`."""
    return _chunks(_sendmail_lines(messages, distinct))


def _sendmail_lines(messages: int, distinct: bool) -> Iterator[str]:
    yield f"\t\t/var/spool/mqueue ({messages} requests)\n"
    yield "-----Q-ID----- --Size-- -Priority- ---Q-Time--- --------Sender/Recipient--------\n"
    for i in range(messages):
        kind = _kind(i)
        stamp = time.strftime("%b %e %H:%M", time.localtime(START + i))
        yield f"{i:014d}       34      30165 {stamp} news@example.org\n"
        status = None
        if kind in ("rate_limit", "mailbox_full"):
            status = "Deferred: " + _reply(i, distinct)[:70]
        elif kind == "refused":
            status = "Deferred: Connection refused by gmail-smtp-in.l.google.com."
        elif kind == "elsewhere":
            status = "Deferred: Connection refused by mx.other.example."
        if status:
            yield f"                 ({status})\n"
        yield f"\t\t\t\t\t\t{_address(i)}\n"
        if status:
            yield f"\t\t ({status})\n"
    yield f"\t\tTotal requests: {messages}\n"


def opensmtpd(messages: int, *, distinct: bool = True) -> Iterator[bytes]:
    """`smtpctl show queue`."""
    return _chunks(_opensmtpd_lines(messages, distinct))


def _opensmtpd_lines(messages: int, distinct: bool) -> Iterator[str]:
    for i in range(messages):
        kind, rcpt = _kind(i), _address(i)
        error, tries = "", 1
        if kind in ("rate_limit", "mailbox_full"):
            error = _reply(i, distinct)
        elif kind in ("refused", "elsewhere"):
            error = "Network error on destination MXs"
        else:
            tries = 0
        stamp = START + i
        yield (
            f"{i:016x}|local|mta|auth|news@example.org|{rcpt}|{rcpt}|{stamp}|{stamp}|0|{tries}|pending|300|{error}\n"
        )
