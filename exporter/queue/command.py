"""Which listing command to run, and running it: streamed, with a deadline, never through a shell, and never
leaving a process behind."""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Final

from exporter.queue import exim, opensmtpd, postfix, sendmail

COMMANDS: Final[dict[str, tuple[str, ...]]] = {
    "postfix": postfix.COMMAND,
    "exim": exim.COMMAND,
    "sendmail": sendmail.COMMAND,
    "opensmtpd": opensmtpd.COMMAND,
}
_SBIN: Final = ("/usr/local/sbin", "/usr/sbin", "/sbin")
STDERR_KEPT: Final = 4096
TERM_GRACE_SECONDS: Final = 1.0


class ListingError(Exception):
    """The listing failed; str() is its cause, stable from one failure to the next (logged once per cause)."""


def which(name: str) -> str | None:
    """A program on PATH or in the sbin directories (an unprivileged user's PATH often lacks them)."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *_SBIN])
    return shutil.which(name, path=path)


def is_sendmail(path: str) -> bool:
    """Whether `path` is Sendmail itself, not another MTA's compatibility `sendmail`/`mailq` (Postfix's,
    Exim's, OpenSMTPD's): Sendmail's binary names its sendmail.cf; Postfix's hands mail to postdrop."""
    real = os.path.realpath(path)
    if os.path.basename(real) in ("exim", "exim4", "smtpctl"):
        return False
    tail = b""
    names_cf = False
    try:
        with open(real, "rb") as binary:
            while chunk := binary.read(1 << 20):
                window = tail + chunk
                if b"postdrop" in window or b"MAIL_CONFIG" in window:
                    return False
                names_cf = names_cf or b"sendmail.cf" in window
                tail = chunk[-16:]
    except OSError:
        return False
    return names_cf


def detect(find: Callable[[str], str | None] = which) -> str | None:
    """The MTA whose queue command is installed, or None. Postfix first: its `mailq` is not Sendmail's."""
    if find("postqueue"):
        return "postfix"
    if find("exim") or find("exim4"):
        return "exim"
    if find("smtpctl"):
        return "opensmtpd"
    found = find("sendmail")
    if found and is_sendmail(found):
        return "sendmail"
    return None


def default_command(mta: str, find: Callable[[str], str | None] = which) -> list[str]:
    """The listing command of `mta`, its program looked up (left bare when it is not installed: each listing then
    fails, visibly, until it is)."""
    program, *args = COMMANDS[mta]
    names = ("exim", "exim4") if mta == "exim" else (program,)
    for name in names:
        found = find(name)
        if found is not None:
            return [found, *args]
    return [program, *args]


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGKILL the listing when the thread that started it ends (the exporter
    killed with SIGKILL too). Resolved before any fork: the child only calls prctl, no import, no lock."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)

    return preexec


_PREEXEC: Final = _die_with_parent()


class Listing:
    """One run of a listing command: its stdout as chunks within a deadline; its exit checked by finish().

    The command runs in a process group of its own, so a timeout ends the whole of it (`sudo`, `docker exec` and
    what they started): SIGTERM first (sudo relays it to a command it runs as another user, which we may not
    signal), SIGKILL after TERM_GRACE_SECONDS. A listing is never left behind: the group is killed on any exit
    from the `with` block, and PR_SET_PDEATHSIG kills the command if the exporter dies without running it. The
    kernel clears that for a setuid program (sudo), which then ends on its own when its output pipe breaks."""

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)
        self.timeout = timeout
        self._monotonic = monotonic
        self._deadline = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self.stderr = b""

    def __enter__(self) -> Listing:
        self._deadline = self._monotonic() + self.timeout
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_PREEXEC,
                env={**os.environ, "LC_ALL": "C"},
            )
        except OSError as err:
            raise ListingError(f"cannot run {self.argv[0]}: {err.strerror or err}") from err
        return self

    def chunks(self) -> Iterator[bytes]:
        """Standard output as it comes; raises ListingError when the deadline passes. Standard error is read
        alongside (its first STDERR_KEPT bytes kept) so a chatty command cannot stall on a full pipe."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        selector = selectors.DefaultSelector()
        try:
            selector.register(proc.stdout, selectors.EVENT_READ)
            selector.register(proc.stderr, selectors.EVENT_READ)
            open_streams = 2
            while open_streams:
                remaining = self._deadline - self._monotonic()
                if remaining <= 0:
                    raise ListingError(f"timed out after {self.timeout:g}s")
                for key, _ in selector.select(remaining):
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        selector.unregister(key.fileobj)
                        open_streams -= 1
                    elif key.fileobj is proc.stdout:
                        yield data
                    elif len(self.stderr) < STDERR_KEPT:
                        self.stderr += data[: STDERR_KEPT - len(self.stderr)]
        finally:
            selector.close()

    def finish(self) -> None:
        """Waits for the command to exit within the deadline; raises ListingError unless it exited 0."""
        proc = self._proc
        assert proc is not None
        try:
            status = proc.wait(max(0.0, self._deadline - self._monotonic()))
        except subprocess.TimeoutExpired:
            raise ListingError(f"timed out after {self.timeout:g}s") from None
        if status != 0:
            what = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
            first = self.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
            raise ListingError(f"{what}: {first[0][:200]}" if first else what)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(TERM_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Whatever the command left in its group (a child that ignored TERM, a background helper) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
