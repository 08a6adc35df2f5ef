"""The `demo` command: the exporter following a temporary Postfix log that a bundled writer keeps growing."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shlex
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Final

from exporter import config, daemon

DEFAULT_RATE: Final = 3.0
"""Lines per second the writer appends."""

# Real Gmail replies as Postfix logs them: (recipient domain, dsn, status, reply).
REPLIES: Final = (
    (
        "gmail.com",
        "5.7.26",
        "bounced",
        "550-5.7.26 Unauthenticated email from example.net is not accepted due to domain's 550-5.7.26 DMARC "
        "policy. Please contact the administrator of example.net domain if 550-5.7.26 this was a "
        "legitimate mail. "
        "To learn about the DMARC initiative, go 550-5.7.26 to 550 5.7.26  "
        "https://support.google.com/mail/?p=DmarcRejection",
    ),
    (
        "gmail.com",
        "4.2.1",
        "deferred",
        "450-4.2.1 The user you are trying to contact is receiving mail too 450-4.2.1 quickly. Please "
        "resend your "
        "message at a later time. If the user is able to 450-4.2.1 receive mail at that time, your "
        "message will be "
        "delivered. For more 450-4.2.1 information, go to 450 4.2.1  "
        "https://support.google.com/mail/?p=ReceivingRate",
    ),
    (
        "gmail.com",
        "4.7.28",
        "deferred",
        "421-4.7.28 Gmail has detected an unusual rate of unsolicited mail from your IP address. To "
        "protect our "
        "421-4.7.28 users from spam, mail sent from your IP address has been temporarily 421-4.7.28 rate "
        "limited. "
        "To learn more about Gmail requirements for bulk 421-4.7.28 senders, visit 421 4.7.28  "
        "https://support.google.com/mail/?p=UnsolicitedRateLimitError",
    ),
    (
        "googlemail.com",
        "5.1.1",
        "bounced",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 "
        "double-checking "
        "the recipient's email address for typos or 550-5.1.1 unnecessary spaces. For more information, "
        "go to "
        "550 5.1.1  https://support.google.com/mail/?p=NoSuchUser",
    ),
    (
        "gmail.com",
        "5.7.1",
        "bounced",
        "550-5.7.1 Our system has detected that this message is likely unsolicited mail. To reduce the "
        "amount "
        "550-5.7.1 of spam sent to Gmail, this message has been blocked. For more information, go to 550 "
        "5.7.1  "
        "https://support.google.com/mail/?p=UnsolicitedMessageError",
    ),
    (
        "gmail.com",
        "4.2.2",
        "deferred",
        "452-4.2.2 The recipient's inbox is out of storage space and inactive. Please direct the "
        "452-4.2.2 recipient "
        "to 452 4.2.2  https://support.google.com/mail/?p=OverQuotaTemp",
    ),
)
GOOGLE_MX: Final = "gmail-smtp-in.l.google.com[142.250.27.26]:25"
NAMES: Final = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


QUEUE_HELD: Final = 25
"""Deferred messages the demo queue holds at most: older ones are taken as delivered on a later try."""


class DemoQueue:
    """What `postqueue -j` would list for the demo log: its deferred messages, rewritten whole at each change."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._entries: dict[str, dict[str, object]] = {}
        self.write()

    def defer(self, queue_id: str, recipient: str, reason: str) -> None:
        self._entries[queue_id] = {
            "queue_name": "deferred",
            "queue_id": queue_id,
            "arrival_time": int(time.time()),
            "message_size": 4242,
            "forced_expire": False,
            "sender": "news@example.net",
            "recipients": [{"address": recipient, "delay_reason": reason}],
        }
        while len(self._entries) > QUEUE_HELD:
            del self._entries[next(iter(self._entries))]
        self.write()

    def write(self) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(entry) + "\n" for entry in self._entries.values())
        os.replace(tmp, self.path)


def postfix_lines(rng: random.Random, queue: DemoQueue | None = None) -> Iterator[str]:
    """An endless, plausible Postfix log: Google accepts most mail, refuses some, other hosts are noise. Deferred
    mail also goes to the demo queue."""
    for n in itertools.count(1):
        now = time.strftime("%b %e %H:%M:%S", time.localtime())
        queue_id = f"{0x1A2B3C4D5 + n * 7919:X}"[:11]
        name = rng.choice(NAMES)
        pid = 9000 + n % 97
        yield f"{now} mx1 postfix/qmgr[811]: {queue_id}: from=<news@example.net>, size={rng.randint(900, 90000)}, nrcpt=1 (queue active)"
        roll = rng.random()
        if roll < 0.55:
            session = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=20))
            yield (
                f"{now} mx1 postfix/smtp[{pid}]: {queue_id}: to=<{name}@gmail.com>, relay={GOOGLE_MX}, delay=0.9, "
                f"delays=0.1/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK  1764451969 {session}.{n % 999} - gsmtp)"
            )
        elif roll < 0.85:
            domain, dsn, status, reply = rng.choice(REPLIES)
            session = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=20))
            said = (
                f"host gmail-smtp-in.l.google.com[142.250.27.26] said: {reply} {session}.{n % 999} - gsmtp "
                "(in reply to RCPT TO command)"
            )
            yield (
                f"{now} mx1 postfix/smtp[{pid}]: {queue_id}: to=<{name}@{domain}>, relay={GOOGLE_MX}, delay=1.2, "
                f"delays=0.1/0/0.4/0.7, dsn={dsn}, status={status} ({said})"
            )
            if status == "deferred" and queue is not None:
                queue.defer(queue_id, f"{name}@{domain}", said)
        else:
            yield (
                f"{now} mx1 postfix/smtp[{pid}]: {queue_id}: to=<{name}@example.org>, relay=mx.example.org[192.0.2.25]:25, "
                f"delay=0.4, delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Xk2Lq0abc)"
            )  # fmt: skip
        yield f"{now} mx1 postfix/qmgr[811]: {queue_id}: removed"


def write_log(
    path: str, rate: float, stop: threading.Event, seed: int = 1, queue: DemoQueue | None = None
) -> None:
    """Appends lines to `path` at about `rate` lines per second until `stop` is set."""
    lines = postfix_lines(random.Random(seed), queue)
    with open(path, "a", encoding="utf-8") as log:
        for _ in range(40):  # some history, so the first page is not empty
            log.write(next(lines) + "\n")
        log.flush()
        while not stop.wait(1.0 / rate):
            log.write(next(lines) + "\n")
            log.flush()


def demo(args: argparse.Namespace) -> int:
    """Runs the exporter on a demo log until interrupted."""
    with tempfile.TemporaryDirectory(prefix="gmail-rejection-exporter-demo-") as tmp:
        log_path = f"{tmp}/mail.log"
        open(log_path, "w").close()
        queue = DemoQueue(f"{tmp}/postqueue.json")
        stop = threading.Event()
        writer = threading.Thread(
            target=write_log, args=(log_path, args.rate, stop, 1, queue), daemon=True, name="writer"
        )
        writer.start()
        parser = argparse.ArgumentParser()
        daemon.add_arguments(parser)
        run_args = parser.parse_args(
            [
                "--log.path",
                log_path,
                "--from-beginning",
                "--state.file",
                f"{tmp}/state.json",
                "--web.listen-address",
                args.listen_address,
                # The demo's queue is a file the writer keeps as `postqueue -j` would list it.
                "--queue.mta",
                "postfix",
                "--queue.command",
                f"cat {shlex.quote(queue.path)}",
                "--queue.interval",
                "5s",
            ]
        )

        def announce(url: str) -> None:
            print(
                f"Demo: following {log_path}; open {url} (metrics at {url}metrics). Ctrl-C stops.", flush=True
            )

        try:
            return daemon.Daemon(run_args, announce=announce).run()
        finally:
            stop.set()
            writer.join(2)
            sys.stdout.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the `demo` command."""
    parser.add_argument(
        "--web.listen-address",
        dest="listen_address",
        default=config.DEFAULT_LISTEN_ADDRESS,
        metavar="[HOST]:PORT",
        help=f"address to serve on (default {config.DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="lines per second the writer appends"
    )
    parser.set_defaults(handler=demo)
