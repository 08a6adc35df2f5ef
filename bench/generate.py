"""A busy MX's mail log, generated from a seed: the same traffic as a Postfix log and as an Exim mainlog,
with the ground truth of every delivery to Google in it.

The traffic: inbound mail (a third of it sent by Google's outbound servers, whose names contain "google"),
RBL rejects, local LMTP deliveries, outbound mail to other providers (some refused by them) and outbound mail
to Gmail and Google Workspace MX hosts. Google's refusals are real replies from tests/data/replies.tsv, wrapped
the way Gmail sends them and flattened the way each MTA logs them (see mta-log-shapes in the project notes).
A deferred message is retried later or expires.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import random
import string
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
REPLIES: Final = REPO / "tests" / "data" / "replies.tsv"
LOOKALIKE: Final = REPO / "tests" / "fixtures" / "gmail_lookalike.py"

DEFAULT_SEED: Final = 20261129
STATUSES: Final = ("sent", "deferred", "bounced", "expired")

GOOGLE_SHARE: Final = 0.32
"""Share of messages that go to Google; tuned so that about 8 % of Postfix lines are outcomes at Google."""
REFUSED_SHARE: Final = 0.30
"""Share of outcome lines at Google that are refusals (deferred or bounced)."""
EXPIRE_SHARE: Final = 0.15
"""Share of deferred messages whose next queue run finds them too old (the rest are retried)."""
RETRY_AFTER: Final = (50, 1500)
"""A deferred message comes back this many messages later: well inside the analyser's 20,000 queue-id memory."""

GMAIL_MX: Final = (
    "gmail-smtp-in.l.google.com",
    "alt1.gmail-smtp-in.l.google.com",
    "alt2.gmail-smtp-in.l.google.com",
    "alt3.gmail-smtp-in.l.google.com",
    "alt4.gmail-smtp-in.l.google.com",
)
WORKSPACE_MX: Final = (
    "aspmx.l.google.com",
    "alt1.aspmx.l.google.com",
    "alt2.aspmx.l.google.com",
    "aspmx2.googlemail.com",
    "aspmx3.googlemail.com",
)
WORKSPACE_DOMAINS: Final = (
    "acme-corp.example",
    "northwind.example",
    "contoso-school.example",
    "fabrikam.example",
)
LOCAL_DOMAIN: Final = "example.org"


@dataclass(frozen=True)
class Provider:
    """A mail provider other than Google: where its MX is and how it accepts or refuses."""

    domain: str
    mx: str
    ip_prefix: str
    accept: str
    refuse: str
    refuse_dsn: str


PROVIDERS: Final = (
    Provider(
        "outlook.com", "outlook-com.olc.protection.outlook.com", "52.101.", "250 2.6.0 <{mid}> [InternalId=4483945] Queued mail for delivery",
        "550 5.7.1 Unfortunately, messages from [203.0.113.25] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3150).", "5.7.1",
    ),
    Provider(
        "yahoo.com", "mta7.am0.yahoodns.net", "67.195.", "250 ok dirdel",
        "421 4.7.0 [TSS04] Messages from 203.0.113.25 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", "4.7.0",
    ),
    Provider(
        "icloud.com", "mx01.mail.icloud.com", "17.57.", "250 2.0.0 Ok: queued as 4X1Y2Z3",
        "550 5.7.1 Mail from IP 203.0.113.25 was rejected due to listing in Spamhaus PBL.", "5.7.1",
    ),
    Provider(
        "gmx.net", "mx00.gmx.net", "212.227.", "250 Requested mail action okay, completed: id=1MqXYZ-1abcDE",
        "554-gmx.net (mxgmx) Nemesis ESMTP Service not available 554-No SMTP service 554 invalid DNS PTR resource record", "5.0.0",
    ),
    Provider(
        "proton.me", "mail.protonmail.ch", "185.70.", "250 2.0.0 Ok: queued as 4Zxyz",
        "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted", "4.2.0",
    ),
)  # fmt: skip

_FIRST: Final = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
                 "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yolanda")  # fmt: skip
_INBOUND: Final = ("mail.example.net", "smtp.partner.example", "mx.shop.example", "out.newsletter.example",
                   "relay.university.example")  # fmt: skip
_RBL_SENDERS: Final = ("unknown", "dsl-203-0-113-9.isp.example", "host.bad.example")
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_BASE62: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
START: Final = (2025, 11, 28, 6, 0, 0)
"""Start of the log's clock: a past date, so no syslog timestamp can look like it is in the future."""


CorpusReply = Any
"""A row of replies.tsv as the Gmail look-alike fixture reads it (its `Reply`, loaded by path)."""


@dataclass
class Truth:
    """What a correct reader of either log must count."""

    postfix_lines: int = 0
    exim_lines: int = 0
    deliveries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    """Outcome lines at Google per recipient, by status."""
    categories: dict[str, int] = field(default_factory=dict)
    """Refused outcome lines at Google by the category of the corpus row that produced them."""
    codes: dict[str, int] = field(default_factory=dict)
    """Refused outcome lines at Google by 'code enhanced_code'."""
    smtp_outcomes: dict[str, int] = field(default_factory=lambda: {"sent": 0, "deferred": 0, "bounced": 0})
    """Every postfix/smtp outcome line (any provider) by status: what a generic Postfix exporter counts."""
    lmtp_sent: int = 0
    noqueue_rejects: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "postfix_lines": self.postfix_lines,
            "exim_lines": self.exim_lines,
            "deliveries": self.deliveries,
            "categories": dict(sorted(self.categories.items())),
            "codes": dict(sorted(self.codes.items())),
            "smtp_outcomes": self.smtp_outcomes,
            "lmtp_sent": self.lmtp_sent,
            "noqueue_rejects": self.noqueue_rejects,
        }


def load_corpus(path: Path = REPLIES) -> list[CorpusReply]:
    """The refusal rows of the corpus (rows with a category), read by the look-alike's own loader."""
    return [r for r in _lookalike().load_replies(path).values() if r.category]


@functools.cache
def _lookalike() -> ModuleType:
    """The fixture that wraps a reply the way Gmail sends it; loaded by path because tests/ is no package."""
    spec = importlib.util.spec_from_file_location("gmail_lookalike", LOOKALIKE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {LOOKALIKE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gmail_lookalike", module)  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@dataclass
class Attempt:
    """One delivery attempt of one recipient at a Google host, in MTA-neutral terms."""

    recipient: str
    host: str
    ip: str
    row: CorpusReply | None
    """None: accepted."""
    wire: list[str]
    """Google's reply lines as sent on the wire."""
    first_mx: str | None = None
    """The primary MX that refused the greeting before this host was tried (Postfix logs it without a recipient)."""


@dataclass
class Message:
    """One message of the traffic and everything the MTA logs about it."""

    kind: str
    """inbound, rbl, outbound, google, retry, expire"""
    qid: str
    eid: str
    """Exim message id."""
    sender: str
    client: str = ""
    client_ip: str = ""
    recipients: list[str] = field(default_factory=list)
    provider: Provider | None = None
    refused: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    size: int = 0


class Traffic:
    """Draws messages from a seeded random generator; every draw goes through `self.rng`."""

    def __init__(self, seed: int, corpus: list[CorpusReply]) -> None:
        self.rng = random.Random(seed)
        self.corpus = corpus
        self._format_reply: Callable[..., list[str]] = _lookalike().format_reply
        self._count = 0
        self._pending: list[tuple[int, Message]] = []

    def session_id(self) -> str:
        """Gmail's session id in one of its shapes (the fixture's own is not seeded)."""
        r = self.rng
        lower, digits, hexd = string.ascii_lowercase, string.digits, "0123456789abcdef"

        def pick(alphabet: str, n: int) -> str:
            return "".join(r.choice(alphabet) for _ in range(n))

        if r.random() < 0.5:
            return f"{pick(lower, 1)}{r.randint(1, 99)}si{pick(digits, 7)}{pick(lower, 3)}.{pick(digits, 3)}"
        return f"a{pick(hexd, 12)}-{pick(hexd, 11)}si{pick(digits, 10)}{pick(lower, 1)}.{pick(digits, 3)}"

    def _ids(self) -> tuple[str, str]:
        self._count += 1
        n = self._count * 2654435761 % (1 << 40)
        qid = f"{n:010X}"
        digits = []
        m = self._count + 3_000_000_000
        for _ in range(14):
            m, d = divmod(m, 62)
            digits.append(_BASE62[d])
        e = "".join(reversed(digits))
        return qid, f"1x{e[-4:]}-{e[-10:-4]}-{e[-12:-10]}"

    def _user(self) -> str:
        return f"{self.rng.choice(_FIRST)}.{self.rng.randint(1, 9999)}"

    def _google_attempt(self, recipient: str) -> Attempt:
        r = self.rng
        domain = recipient.partition("@")[2]
        workspace = domain in WORKSPACE_DOMAINS
        host = r.choice(WORKSPACE_MX if workspace else GMAIL_MX)
        ip = f"142.250.{r.randint(0, 255)}.{r.randint(1, 254)}"
        sid = self.session_id()
        if r.random() >= REFUSED_SHARE:
            return Attempt(
                recipient, host, ip, None, [f"250 2.0.0 OK  {1764300000 + self._count} {sid} - gsmtp"]
            )
        row = r.choice(self.corpus)
        wire = self._format_reply(row, sid=sid)
        first_mx: str | None = None
        primary = host in (GMAIL_MX[0], WORKSPACE_MX[0])
        if row.stage == "greeting" and row.code.startswith("4") and primary and r.random() < 0.5:
            # Postfix moves on to the next MX after a 421 greeting and logs the first one without a recipient.
            first_mx, host = host, f"alt1.{host}"
        return Attempt(recipient, host, ip, row, wire, first_mx=first_mx)

    def messages(self) -> Iterator[Message]:
        r = self.rng
        while True:
            due = [m for at, m in self._pending if at <= self._count]
            if due:
                self._pending = [(at, m) for at, m in self._pending if at > self._count]
                for follow_up in due:
                    yield self._follow_up(follow_up)
            qid, eid = self._ids()
            x = r.random()
            if x < GOOGLE_SHARE:
                msg = self._to_google(qid, eid)
                self._come_back(msg)
                yield msg
            elif x < GOOGLE_SHARE + 0.20:
                yield self._to_provider(qid, eid)
            elif x < GOOGLE_SHARE + 0.49:
                yield self._inbound(qid, eid)
            else:
                yield self._rbl(qid, eid)

    def _come_back(self, msg: Message) -> None:
        """A message with deferred recipients comes back later for those recipients."""
        deferred = [a.recipient for a in msg.attempts if a.row is not None and a.row.code.startswith("4")]
        if deferred:
            again = Message("retry", msg.qid, msg.eid, msg.sender, recipients=deferred, size=msg.size)
            self._pending.append((self._count + self.rng.randint(*RETRY_AFTER), again))

    def _follow_up(self, msg: Message) -> Message:
        # Postfix logs one expiry per message, Exim one per recipient: only single-recipient messages expire,
        # so both logs carry the same count.
        if len(msg.recipients) == 1 and self.rng.random() < EXPIRE_SHARE:
            msg.kind = "expire"
            return msg
        msg.kind = "retry"
        msg.attempts = [self._google_attempt(rcpt) for rcpt in msg.recipients]
        self._come_back(msg)
        return msg

    def _to_google(self, qid: str, eid: str) -> Message:
        r = self.rng
        msg = Message("google", qid, eid, f"{self._user()}@{LOCAL_DOMAIN}", size=r.randint(900, 90_000))
        for _ in range(r.choice((1, 1, 1, 1, 2, 2, 3))):
            domain = r.choice(("gmail.com", "gmail.com", "gmail.com", "googlemail.com", *WORKSPACE_DOMAINS))
            msg.recipients.append(f"{self._user()}@{domain}")
        msg.attempts = [self._google_attempt(rcpt) for rcpt in msg.recipients]
        return msg

    def _to_provider(self, qid: str, eid: str) -> Message:
        r = self.rng
        provider = r.choice(PROVIDERS)
        msg = Message("outbound", qid, eid, f"{self._user()}@{LOCAL_DOMAIN}", provider=provider)
        msg.recipients = [f"{self._user()}@{provider.domain}" for _ in range(r.choice((1, 1, 2)))]
        msg.refused = r.random() < 0.1
        msg.size = r.randint(900, 90_000)
        msg.client_ip = f"{provider.ip_prefix}{r.randint(0, 255)}.{r.randint(1, 254)}"
        return msg

    def _inbound(self, qid: str, eid: str) -> Message:
        r = self.rng
        if r.random() < 0.35:
            # Mail from Gmail users: Google's outbound servers name themselves *.google.com.
            client = f"mail-{r.choice(('wr1', 'yw1', 'ej1', 'pl1', 'lf1'))}-f{r.randint(41, 199)}.google.com"
            ip = f"209.85.{r.randint(128, 255)}.{r.randint(1, 254)}"
            sender = f"{self._user()}@gmail.com"
        else:
            client = r.choice(_INBOUND)
            ip = f"198.51.100.{r.randint(1, 254)}"
            sender = f"{self._user()}@{client.split('.', 1)[1]}"
        msg = Message("inbound", qid, eid, sender, client=client, client_ip=ip, size=r.randint(900, 90_000))
        msg.recipients = [f"{self._user()}@{LOCAL_DOMAIN}"]
        return msg

    def _rbl(self, qid: str, eid: str) -> Message:
        r = self.rng
        msg = Message("rbl", qid, eid, f"{self._user()}@spam.example", client=r.choice(_RBL_SENDERS))
        msg.client_ip = f"203.0.113.{r.randint(1, 254)}"
        msg.recipients = [f"{self._user()}@{LOCAL_DOMAIN}"]
        return msg


class Clock:
    """The log's clock: a few milliseconds per line, never backwards."""

    def __init__(self, rng: random.Random) -> None:
        import calendar

        self._t = float(calendar.timegm((*START, 0, 0, 0)))
        self._rng = rng

    def tick(self) -> float:
        self._t += self._rng.random() * 0.02
        return self._t

    def syslog(self, t: float) -> str:
        import time

        tm = time.gmtime(t)
        return f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"

    def exim(self, t: float) -> str:
        import time

        tm = time.gmtime(t)
        ms = int((t % 1) * 1000)
        return (
            f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}.{ms:03d}"
        )


_POSTFIX_STAGE: Final = {
    "mail": " (in reply to MAIL FROM command)",
    "rcpt": " (in reply to RCPT TO command)",
    "data": " (in reply to end of DATA command)",
}
_EXIM_DEFER: Final = {"greeting": "0", "ehlo": "0", "mail": "-45", "rcpt": "-44", "data": "-46"}


def _exim_after(stage: str, sender: str, recipient: str, size: int) -> str:
    if stage == "greeting":
        return "initial connection"
    if stage == "ehlo":
        return "EHLO mx1.example.org"
    if stage == "mail":
        return f"pipelined MAIL FROM:<{sender}> SIZE={size}"
    if stage == "rcpt":
        return f"RCPT TO:<{recipient}>"
    return "end of data"


class Writer:
    """Renders each message as Postfix and as Exim lines and keeps the ground truth."""

    def __init__(self, postfix: IO[str], exim: IO[str], rng: random.Random) -> None:
        self.postfix = postfix
        self.exim = exim
        self.rng = rng
        self.clock = Clock(rng)
        self.truth = Truth()
        self._pid = 4000

    def _p(self, t: float, prog: str, pid: int, text: str) -> None:
        self.postfix.write(f"{self.clock.syslog(t)} mx1 postfix/{prog}[{pid}]: {text}\n")
        self.truth.postfix_lines += 1

    def _e(self, t: float, pid: int, text: str) -> None:
        self.exim.write(f"{self.clock.exim(t)} [{pid}] {text}\n")
        self.truth.exim_lines += 1

    def _newpid(self) -> int:
        self._pid = 4000 + (self._pid + self.rng.randint(1, 40) - 4000) % 60000
        return self._pid

    def write(self, msg: Message) -> None:
        handler = getattr(self, f"_{msg.kind}")
        handler(msg)

    def _smtpd_in(self, msg: Message, t: float) -> int:
        pid = self._newpid()
        self._p(t, "smtpd", pid, f"connect from {msg.client}[{msg.client_ip}]")
        self._p(self.clock.tick(), "smtpd", pid, f"{msg.qid}: client={msg.client}[{msg.client_ip}]")
        return pid

    def _queue(self, msg: Message, mid: str) -> None:
        self._p(self.clock.tick(), "cleanup", self._newpid(), f"{msg.qid}: message-id=<{mid}>")
        self._p(
            self.clock.tick(),
            "qmgr",
            1201,
            f"{msg.qid}: from=<{msg.sender}>, size={msg.size}, nrcpt={len(msg.recipients)} (queue active)",
        )

    def _delays(self) -> str:
        r = self.rng
        parts = [round(r.random() * x, 2) for x in (0.3, 0.05, 0.4, 1.2)]
        return f"delay={round(sum(parts), 2)}, delays={'/'.join(f'{p:g}' for p in parts)}"

    def _inbound(self, msg: Message) -> None:
        t = self.clock.tick()
        pid = self._smtpd_in(msg, t)
        mid = (
            f"CA+{msg.qid.lower()}{msg.eid}@mail.gmail.com"
            if "google" in msg.client
            else f"{msg.eid}@{msg.client}"
        )
        self._queue(msg, mid)
        rcpt = msg.recipients[0]
        lmtp = self._newpid()
        saved = f"250 2.0.0 <{rcpt}> {msg.eid.replace('-', '')}Gx Saved"
        self._p(
            self.clock.tick(),
            "lmtp",
            lmtp,
            f"{msg.qid}: to=<{rcpt}>, relay=mail.{LOCAL_DOMAIN}[private/dovecot-lmtp], {self._delays()}, "
            f"dsn=2.0.0, status=sent ({saved})",
        )
        self.truth.lmtp_sent += 1
        self._p(self.clock.tick(), "qmgr", 1201, f"{msg.qid}: removed")
        self._p(
            self.clock.tick(),
            "smtpd",
            pid,
            f"disconnect from {msg.client}[{msg.client_ip}] ehlo=1 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=6",
        )
        e = self._newpid()
        self._e(
            t,
            e,
            f"{msg.eid} <= {msg.sender} H={msg.client} [{msg.client_ip}] P=esmtps "
            f"X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S={msg.size} id={mid}",
        )
        self._e(
            self.clock.tick(),
            e + 1,
            f'{msg.eid} => {rcpt} R=local_user T=dovecot_lmtp H=localhost [127.0.0.1] C="{saved}"',
        )
        self._e(self.clock.tick(), e + 1, f"{msg.eid} Completed")

    def _rbl(self, msg: Message) -> None:
        t = self.clock.tick()
        pid = self._newpid()
        peer = f"{msg.client}[{msg.client_ip}]"
        rcpt = msg.recipients[0]
        helo = msg.sender.partition("@")[2]
        self._p(t, "smtpd", pid, f"connect from {peer}")
        self._p(
            self.clock.tick(),
            "smtpd",
            pid,
            f"NOQUEUE: reject: RCPT from {peer}: 554 5.7.1 Service unavailable; Client host [{msg.client_ip}] "
            f"blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/{msg.client_ip}; "
            f"from=<{msg.sender}> to=<{rcpt}> proto=ESMTP helo=<{helo}>",
        )
        self.truth.noqueue_rejects += 1
        self._p(
            self.clock.tick(),
            "smtpd",
            pid,
            f"disconnect from {peer} ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4",
        )
        self._e(
            t,
            self._newpid(),
            f"H=({helo}) [{msg.client_ip}] F=<{msg.sender}> rejected RCPT <{rcpt}>: "
            f"JunkMail rejected - {msg.client_ip} is in an RBL: zen.spamhaus.org",
        )

    def _submission(self, msg: Message) -> tuple[float, int]:
        """A message an internal client submits: Postfix's smtpd/cleanup/qmgr lines and Exim's arrival."""
        t = self.clock.tick()
        msg.client, msg_ip = "app1.example.org", "10.0.0.21"
        pid = self._newpid()
        self._p(t, "smtpd", pid, f"connect from {msg.client}[{msg_ip}]")
        self._p(
            self.clock.tick(),
            "smtpd",
            pid,
            f"{msg.qid}: client={msg.client}[{msg_ip}], sasl_method=PLAIN, sasl_username={msg.sender}",
        )
        self._queue(msg, f"{msg.eid}@example.org")
        self._p(
            self.clock.tick(),
            "smtpd",
            pid,
            f"disconnect from {msg.client}[{msg_ip}] ehlo=2 starttls=1 auth=1 mail=1 rcpt={len(msg.recipients)} "
            f"data=1 quit=1 commands={7 + len(msg.recipients)}",
        )
        e = self._newpid()
        self._e(
            t,
            e,
            f"{msg.eid} <= {msg.sender} H={msg.client} [{msg_ip}] P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 "
            f"CV=no A=plain:{msg.sender} S={msg.size} id={msg.eid}@example.org",
        )
        return t, e + 1

    def _outbound(self, msg: Message) -> None:
        _, e = self._submission(msg)
        provider = msg.provider
        assert provider is not None
        pid = self._newpid()
        for i, rcpt in enumerate(msg.recipients):
            relay = f"{provider.mx}[{msg.client_ip}]:25"
            t = self.clock.tick()
            if msg.refused:
                reply = provider.refuse.format(rcpt=rcpt)
                status = "deferred" if reply.startswith("4") else "bounced"
                detail = f"host {provider.mx}[{msg.client_ip}] said: {reply} (in reply to RCPT TO command)"
                dsn = provider.refuse_dsn
            else:
                reply = provider.accept.format(mid=f"{msg.eid}@example.org")
                status, detail, dsn = "sent", reply, "2.0.0"
            self._p(
                t,
                "smtp",
                pid,
                f"{msg.qid}: to=<{rcpt}>, relay={relay}, {self._delays()}, dsn={dsn}, status={status} ({detail})",
            )
            self.truth.smtp_outcomes[status] += 1
            host = f"H={provider.mx} [{msg.client_ip}]"
            if status == "sent":
                flag = "=>" if i == 0 else "->"
                self._e(
                    t,
                    e,
                    f'{msg.eid} {flag} {rcpt} R=dnslookup T=remote_smtp {host} X=TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256 CV=yes C="{reply}" QT=1.1s DT=0.4s',
                )
            elif status == "deferred":
                self._e(
                    t,
                    e,
                    f"{msg.eid} == {rcpt} R=dnslookup T=remote_smtp defer (-44) {host} DT=0.2s: SMTP error from remote mail server after RCPT TO:<{rcpt}>: {reply}",
                )
            else:
                self._e(
                    t,
                    e,
                    f"{msg.eid} ** {rcpt} R=dnslookup T=remote_smtp {host}: SMTP error from remote mail server after RCPT TO:<{rcpt}>: {reply}",
                )
        self._p(self.clock.tick(), "qmgr", 1201, f"{msg.qid}: removed")
        self._e(self.clock.tick(), e, f"{msg.eid} Completed")

    def _google(self, msg: Message) -> None:
        _, e = self._submission(msg)
        self._attempts(msg, e)

    def _retry(self, msg: Message) -> None:
        self._p(
            self.clock.tick(),
            "qmgr",
            1201,
            f"{msg.qid}: from=<{msg.sender}>, size={msg.size}, nrcpt={len(msg.recipients)} (queue active)",
        )
        self._attempts(msg, self._newpid())

    def _expire(self, msg: Message) -> None:
        t = self.clock.tick()
        self._p(t, "qmgr", 1201, f"{msg.qid}: from=<{msg.sender}>, status=expired, returned to sender")
        e = self._newpid()
        for rcpt in msg.recipients:
            # Exim gives up per recipient; the host is the last one tried.
            ip = f"142.250.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
            mx = WORKSPACE_MX[0] if rcpt.partition("@")[2] in WORKSPACE_DOMAINS else GMAIL_MX[0]
            self._e(
                t, e, f"{msg.eid} ** {rcpt} R=dnslookup T=remote_smtp H={mx} [{ip}]: retry timeout exceeded"
            )
            self.truth.deliveries["expired"] += 1
        self._p(self.clock.tick(), "qmgr", 1201, f"{msg.qid}: removed")
        self._e(self.clock.tick(), e, f"{msg.eid} Completed")

    def _attempts(self, msg: Message, e: int) -> None:
        pid = self._newpid()
        all_done = True
        bounced_any = False
        for i, a in enumerate(msg.attempts):
            relay = f"{a.host}[{a.ip}]"
            t = self.clock.tick()
            if a.row is None:
                reply = a.wire[0]
                self._p(
                    t,
                    "smtp",
                    pid,
                    f"{msg.qid}: to=<{a.recipient}>, relay={relay}:25, {self._delays()}, dsn=2.0.0, status=sent ({reply})",
                )
                self._count(a, "sent")
                flag = "=>" if i == 0 else "->"
                self._e(
                    t,
                    e,
                    f'{msg.eid} {flag} {a.recipient} R=dnslookup T=remote_smtp H={a.host} [{a.ip}] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes C="{reply}" QT=0.9s DT=0.3s',
                )
                continue
            row = a.row
            status = "deferred" if row.code.startswith("4") else "bounced"
            all_done = all_done and status != "deferred"
            bounced_any = bounced_any or status == "bounced"
            flat = " ".join(a.wire)
            if a.first_mx is not None:
                first = f"{a.first_mx}[142.250.27.{self.rng.randint(1, 254)}]"
                self._p(t, "smtp", pid, f"{msg.qid}: host {first} refused to talk to me: {flat}")
            said = "refused to talk to me" if row.stage in ("greeting", "ehlo") else "said"
            detail = f"host {relay} {said}: {flat}{_POSTFIX_STAGE.get(row.stage, '')}"
            self._p(
                t,
                "smtp",
                pid,
                f"{msg.qid}: to=<{a.recipient}>, relay={relay}:25, {self._delays()}, dsn={row.enhanced_code or row.code[0] + '.0.0'}, status={status} ({detail})",
            )
            self._count(a, status)
            exim_reply = "\\n".join(a.wire)
            after = _exim_after(row.stage, msg.sender, a.recipient, msg.size)
            host = f"H={a.host} [{a.ip}]"
            error = f"SMTP error from remote mail server after {after}: {exim_reply}"
            if self.rng.random() < 0.5:
                # Exim's host-level line for the same reply: a reader must not count it again.
                self._e(t, e, f"{msg.eid} {host}: {error}")
            if status == "deferred":
                self._e(
                    t,
                    e,
                    f"{msg.eid} == {a.recipient} R=dnslookup T=remote_smtp defer ({_EXIM_DEFER[row.stage]}) {host} DT=0.3s: {error}",
                )
            else:
                self._e(
                    t,
                    e,
                    f"{msg.eid} ** {a.recipient} F=<{msg.sender}> P=<{msg.sender}> R=dnslookup T=remote_smtp {host}:25 I=[203.0.113.25]:{40000 + self.rng.randint(0, 20000)}: {error} DT=0.3s",
                )
        if bounced_any:
            bounce_qid, bounce_eid = f"B{msg.qid[1:]}", f"{msg.eid[:-2]}Bx"
            self._p(
                self.clock.tick(),
                "bounce",
                self._newpid(),
                f"{msg.qid}: sender non-delivery notification: {bounce_qid}",
            )
            self._e(
                self.clock.tick(),
                e,
                f"{bounce_eid} <= <> R={msg.eid} U=Debian-exim P=local S={2000 + msg.size // 10}",
            )
        if all_done:
            self._p(self.clock.tick(), "qmgr", 1201, f"{msg.qid}: removed")
            self._e(self.clock.tick(), e, f"{msg.eid} Completed")

    def _count(self, a: Attempt, status: str) -> None:
        truth = self.truth
        truth.deliveries[status] += 1
        truth.smtp_outcomes[status] += 1
        if a.row is not None:
            truth.categories[a.row.category] = truth.categories.get(a.row.category, 0) + 1
            key = f"{a.row.code} {a.row.enhanced_code or '-'}"
            truth.codes[key] = truth.codes.get(key, 0) + 1


def generate(postfix_path: Path, exim_path: Path, lines: int, seed: int = DEFAULT_SEED) -> Truth:
    """Write about `lines` Postfix lines (whole messages; the last one may run a few lines over) and the
    same messages as an Exim mainlog; return what a correct reader counts in either."""
    traffic = Traffic(seed, load_corpus())
    with (
        open(postfix_path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as postfix,
        open(exim_path, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as exim,
    ):
        writer = Writer(postfix, exim, random.Random(seed + 1))
        for message in traffic.messages():
            if writer.truth.postfix_lines >= lines:
                break
            writer.write(message)
    return writer.truth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("postfix", type=Path)
    parser.add_argument("exim", type=Path)
    args = parser.parse_args(argv)
    truth = generate(args.postfix, args.exim, args.lines, args.seed)
    json.dump(truth.as_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
