"""`report --jobs N` gives the report of one process reading every line, byte for byte, wherever the log is cut:
the year rule and the expiry join replayed across cuts, free text never cut, errors in a piece surfaced, no
process left behind."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO

from exporter import offline, parallel
from exporter.analyse import Analyser
from exporter.cli import build_parser
from exporter.errors import WorkerError
from exporter.parallel import Piece

# bench/ is a folder of the checkout, not an installed package.
sys.path.insert(0, str(REPO))
from bench.generate import generate

LOGS = REPO / "tests" / "fixtures" / "logs"
HOST = "mx1"


def analyser(*flags: str) -> Analyser:
    args = build_parser("report").parse_args(["report", *flags, "unused"])
    return offline._analyser(args)


def rendered(report: offline.Report) -> str:
    return json.dumps(report.as_json(), indent=2) + "\n" + report.as_text()


def one_process(paths: list[Path]) -> str:
    return rendered(offline.build_report([str(p) for p in paths], analyser()))


def in_pieces(paths: list[Path], pieces: list[Piece], jobs: int = 2) -> str:
    return rendered(parallel.build_report([str(p) for p in paths], analyser(), pieces, jobs))


def cut_at(path: Path, *cuts: int) -> list[Piece]:
    """Pieces of a file cut exactly at the given line boundaries."""
    bounds = [0, *cuts]
    ends: list[int | None] = [*cuts, None]
    return [Piece(str(path), s, e, last=e is None) for s, e in zip(bounds, ends, strict=True)]


def line_starts(path: Path) -> list[int]:
    data = path.read_bytes()
    return [i + 1 for i, byte in enumerate(data[:-1]) if byte == 10]


@pytest.fixture(scope="module")
def bench_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("bench")
    generate(where / "postfix.log", where / "exim.log", 30_000)
    return where / "postfix.log"


@pytest.fixture
def replaced_advance(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the parent's replay said of each piece: 'exact' or why it summarised the piece again."""
    said: list[str] = []
    real = parallel.advance

    def advance(*args: object, **kwargs: object) -> object:
        try:
            result = real(*args, **kwargs)  # type: ignore[arg-type]
        except parallel.NotExact as err:
            said.append(str(err))
            raise
        said.append("exact")
        return result

    monkeypatch.setattr(parallel, "advance", advance)
    return said


def stamp(when: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(when))


def outcome(when: str, queue_id: str, n: int, status: str, dsn: str, reply: str) -> str:
    """A Postfix smtp outcome line at Gmail's MX (with a session id of Google's length, so that the fast path reads
    every line of a reply after its first)."""
    return (
        f"{when} {HOST} postfix/smtp[{100 + n % 900}]: {queue_id}: to=<user{n}@gmail.com>, "
        f"relay=gmail-smtp-in.l.google.com[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn={dsn}, status={status} "
        f"(host gmail-smtp-in.l.google.com[192.0.2.7] said: {reply} - gsmtp (in reply to end of DATA command))\n"
    )


def sent(when: str, queue_id: str, n: int) -> str:
    """Mail Gmail accepted: the fast path counts it without the analyser's own path ever reading it."""
    return (
        f"{when} {HOST} postfix/smtp[{100 + n % 900}]: {queue_id}: to=<user{n}@gmail.com>, "
        f"relay=gmail-smtp-in.l.google.com[192.0.2.7]:25, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent "
        f"(250 2.0.0 OK  1764300001 x9si9012345.99 - gsmtp)\n"
    )


def deferral(when: str, queue_id: str, n: int) -> str:
    reply = (
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP "
        "address. 421 4.7.28 x1si1023456.12"
    )
    return outcome(when, queue_id, n, "deferred", "4.7.28", reply)


def bounce(when: str, queue_id: str, n: int) -> str:
    reply = (
        "550-5.1.1 The email account that you tried to reach does not exist. 550 5.1.1 "
        "https://support.google.com/mail/?p=NoSuchUser x2si2034567.21"
    )
    return outcome(when, queue_id, n, "bounced", "5.1.1", reply)


def expiry(when: str, queue_id: str) -> str:
    return f"{when} {HOST} postfix/qmgr[77]: {queue_id}: from=<a@example.org>, status=expired, returned to sender\n"


def noise(when: str, n: int) -> str:
    return f"{when} {HOST} postfix/smtpd[{n}]: connect from unknown[198.51.100.{n % 250}]\n"


def test_the_bench_log_cut_anywhere_gives_the_same_report(
    bench_log: Path, replaced_advance: list[str]
) -> None:
    expected = one_process([bench_log])
    starts = line_starts(bench_log)
    cuts = [starts[len(starts) * i // 7] for i in range(1, 7)]
    assert in_pieces([bench_log], cut_at(bench_log, *cuts)) == expected
    assert in_pieces([bench_log], cut_at(bench_log, *cuts), jobs=3) == expected
    assert replaced_advance.count("exact") == 14


def test_every_fixture_log_cut_at_many_places_gives_the_same_report(tmp_path: Path) -> None:
    for log in sorted(LOGS.glob("*.log")):
        expected = one_process([log])
        starts = line_starts(log)
        for share in (0.1, 0.37, 0.5, 0.81):
            cut = starts[int(len(starts) * share)]
            assert in_pieces([log], cut_at(log, cut)) == expected, f"{log.name} cut at byte {cut}"


def iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime(when))


@pytest.mark.parametrize("stamped", [stamp, iso], ids=["syslog", "iso"])
def test_an_expiry_after_the_cut_joins_a_deferral_before_it(
    tmp_path: Path, replaced_advance: list[str], stamped: Callable[[float], str]
) -> None:
    base = time.time() - 3 * 86_400
    lines = [deferral(stamped(base + i), f"D{i:05X}", i) for i in range(40)]
    lines += [noise(stamped(base + 60), i) for i in range(40)]
    lines += [expiry(stamped(base + 3600 + i), f"D{i:05X}") for i in range(0, 40, 3)]
    log = tmp_path / "mail.log"
    log.write_text("".join(lines))
    expected = one_process([log])
    assert json.loads(expected.split("\n}\n")[0] + "\n}")["deliveries"]["expired"] == 14
    starts = line_starts(log)
    for cut in (starts[39], starts[40], starts[79], starts[85]):
        assert in_pieces([log], cut_at(log, cut)) == expected
    assert (
        in_pieces([log], cut_at(log, starts[20], starts[60], starts[82])) == expected
    )  # joins two cuts away
    assert set(replaced_advance) == {"exact"}


@pytest.mark.parametrize("between", [19_999, 20_000])
def test_the_expiry_join_stays_bounded_across_the_cut(tmp_path: Path, between: int) -> None:
    """The join remembers 20,000 queue ids: an expiry joins its deferral only while fewer newer ids came."""
    base = time.time() - 3 * 86_400
    when = stamp(base)
    lines = [deferral(when, "AAAAA", 0)]
    lines += [deferral(stamp(base + 1 + i // 100), f"B{i:06X}", i) for i in range(between)]
    lines.append(expiry(stamp(base + 400), "AAAAA"))
    log = tmp_path / "mail.log"
    log.write_text("".join(lines))
    expected = one_process([log])
    assert json.loads(expected.split("\n}\n")[0] + "\n}")["deliveries"]["expired"] == (between < 20_000)
    starts = line_starts(log)
    for cut in (starts[0], starts[5_000], starts[between - 1]):
        assert in_pieces([log], cut_at(log, cut)) == expected, f"cut at line {starts.index(cut)}"


def test_new_year_and_a_new_month_at_the_cut(tmp_path: Path, replaced_advance: list[str]) -> None:
    lines = []
    for month_end, next_start in (("Dec 31", "Jan  1"), ("Jan 31", "Feb  1")):
        lines += [bounce(f"{month_end} 23:59:{50 + i}", f"E{i:04X}", i) for i in range(8)]
        lines += [bounce(f"{next_start} 00:00:0{i}", f"F{i:04X}", i) for i in range(4)]
        lines.append(bounce(f"{month_end} 23:58:30", "LATE1", 99))  # written late by another process
        lines += [bounce(f"{next_start} 00:00:0{i}", f"F{i:04X}", i) for i in range(4, 8)]
    log = tmp_path / "mail.log"
    log.write_text("".join(lines))
    expected = one_process([log])
    for cut in line_starts(log):
        assert in_pieces([log], cut_at(log, cut)) == expected
    assert set(replaced_advance) == {"exact"}


def test_a_year_that_depends_on_the_lines_before_the_cut_is_read_again(
    tmp_path: Path, replaced_advance: list[str]
) -> None:
    """Eight months ago, then a stamp seven months later: one process reads it as the year before (nearest to the
    log's time), a piece starting at it alone as last month. The replay sees it and the piece is read again."""
    early, late = months_apart()
    lines = [bounce(stamp(early + i), f"G{i:04X}", i) for i in range(5)]
    lines += [bounce(stamp(late + i), f"H{i:04X}", i) for i in range(5)]
    log = tmp_path / "mail.log"
    log.write_text("".join(lines))
    expected = one_process([log])
    assert in_pieces([log], cut_at(log, line_starts(log)[4])) == expected
    assert replaced_advance[0] == "exact"
    assert "depends on the lines before the cut" in replaced_advance[1]


def months_apart() -> tuple[float, float]:
    """Eight months ago and one month ago: a stamp of the second read after the first is the year before."""
    now = time.localtime()
    early = time.mktime((now.tm_year, now.tm_mon - 8, 10, 12, 0, 0, 0, 0, -1))
    late = time.mktime((now.tm_year, now.tm_mon - 1, 10, 12, 0, 0, 0, 0, -1))
    return early, late


def test_accepted_mail_after_the_cut_has_its_year_replayed(
    tmp_path: Path, replaced_advance: list[str]
) -> None:
    """A piece that starts with mail Google accepted, whose year depends on the lines before the cut: the fast path
    reads its stamps with the piece's recording clock, so the replay sees them (it once read them with a clock of its
    own, and the piece's dates came out a year late)."""
    early, late = months_apart()
    lines = [bounce(stamp(early + i), f"G{i:04X}", i) for i in range(5)]
    lines += [sent(stamp(late + i), f"H{i:04X}", i) for i in range(5)]
    log = tmp_path / "mail.log"
    log.write_text("".join(lines))
    expected = one_process([log])
    assert in_pieces([log], cut_at(log, line_starts(log)[4])) == expected
    assert "depends on the lines before the cut" in replaced_advance[1]


def test_a_piece_read_again_joins_the_deferrals_it_reads(tmp_path: Path, replaced_advance: list[str]) -> None:
    """A piece read again in the parent, from a copy of the analyser: the deferrals its fast path reads go to the
    copy's join, so the expiries after them are Google's (they once went to the original's, and were lost)."""
    early, late = months_apart()
    lines = [bounce(stamp(early + i), f"G{i:04X}", i) for i in range(5)]
    lines += [deferral(stamp(late + i), f"H{i:04X}", i) for i in range(3)]
    lines += [expiry(stamp(late + 10 + i), f"H{i:04X}") for i in range(3)]
    log = tmp_path / "mail.log"
    log.write_text("".join(lines))
    expected = one_process([log])
    assert '"expired": 3' in expected
    assert in_pieces([log], cut_at(log, line_starts(log)[4])) == expected
    assert "depends on the lines before the cut" in replaced_advance[1]


def hostile_log(path: Path) -> None:
    """CRLF lines, a NUL byte, an overlong line, free text naming Google, a DSN and upper-case relays."""
    base = time.time() - 5 * 86_400
    out = []
    for i in range(120):
        when = stamp(base + i * 7)
        kind = i % 12
        if kind == 0:
            out.append(bounce(when, f"K{i:04X}", i).replace("\n", "\r\n"))
        elif kind == 1:
            out.append(f"{when} {HOST} postfix/smtp[9]: junk \x00 relay=gmail-smtp-in.l.google.com gsmtp\n")
        elif kind == 2:
            out.append(f"{when} {HOST} postfix/smtp[9]: {'x' * 40_000} gsmtp\n")
        elif kind == 3:
            out.append("Remote-MTA: dns; gmail-smtp-in.l.google.com\n")
            out.append("Diagnostic-Code: smtp; 550-5.7.1 Our system has detected that this message is\n")
            out.append("    likely unsolicited mail. 550 5.7.1 x3si3045678.33 - gsmtp\n")
        elif kind == 4:
            out.append(
                deferral(when, f"L{i:04X}", i).replace(
                    "gmail-smtp-in.l.google.com", "GMAIL-SMTP-IN.L.GOOGLE.COM"
                )
            )
        elif kind == 5:
            out.append(expiry(when, f"L{i - 1:04X}"))
        elif kind == 6:
            out.append("\n")
        else:
            out.append(deferral(when, f"M{i:04X}", i))
    path.write_bytes("".join(out).encode("utf-8", "surrogateescape"))


def test_a_hostile_log_cut_at_every_line_or_inside_one(tmp_path: Path) -> None:
    log = tmp_path / "hostile.log"
    hostile_log(log)
    expected = one_process([log])
    starts = line_starts(log)
    for cut in starts[::3]:
        assert in_pieces([log], cut_at(log, cut)) == expected, f"cut at byte {cut}"
    data = log.read_bytes()
    for nominal in range(
        0, len(data), len(data) // 9
    ):  # the middle of a line: the cut goes to a safe boundary
        cut = parallel.safe_cut(str(log), nominal, analyser())
        if cut is None:
            continue
        assert cut >= nominal and data[cut - 1 : cut] == b"\n"
        assert in_pieces([log], cut_at(log, cut)) == expected


def test_a_cut_never_falls_inside_free_text(tmp_path: Path) -> None:
    log = tmp_path / "hostile.log"
    hostile_log(log)
    data = log.read_bytes()
    reader = analyser()
    for nominal in range(0, len(data), 97):
        cut = parallel.safe_cut(str(log), nominal, reader)
        if cut is None:
            continue
        before = data[:cut].split(b"\n")[-1 - parallel.CLEAN_LINES : -1]
        assert all(not line.strip() or reader.mta_line(line) for line in before), before


def test_several_files_plain_and_compressed(tmp_path: Path, bench_log: Path) -> None:
    first, middle, last = tmp_path / "mail.log.2", tmp_path / "mail.log.1.gz", tmp_path / "mail.log"
    hostile_log(first)
    data = bench_log.read_bytes()
    half = data.index(b"\n", len(data) // 2) + 1
    middle.write_bytes(gzip.compress(data[:half]))
    last.write_bytes(data[half:])
    paths = [first, middle, last]
    expected = one_process(paths)
    pieces = [
        *cut_at(first, line_starts(first)[50]),
        Piece(str(middle), 0, None, last=True),
        *cut_at(last, line_starts(last)[1000], line_starts(last)[9000]),
    ]
    assert in_pieces(paths, pieces) == expected
    planned = parallel.plan([str(p) for p in paths], 2, analyser(), min_piece_bytes=100_000)
    assert planned is not None
    assert [p.path for p in planned if p.path == str(middle)] == [str(middle)]  # never cut
    assert in_pieces(paths, planned) == expected


def test_small_inputs_stdin_and_compressed_files_use_one_process(tmp_path: Path) -> None:
    small = tmp_path / "small.log"
    hostile_log(small)
    packed = tmp_path / "big.log.gz"
    packed.write_bytes(gzip.compress(small.read_bytes() * 2000))
    reader = analyser()
    assert parallel.plan([str(small)], 2, reader) is None
    assert parallel.plan([str(packed)], 2, reader, min_piece_bytes=1000) is None
    assert parallel.plan([str(small), "-"], 2, reader, min_piece_bytes=1000) is None
    assert parallel.plan([str(small)], 1, reader, min_piece_bytes=1000) is None
    assert parallel.plan([str(small)], 2, reader, min_piece_bytes=1000) is not None


def no_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_piece_that_cannot_be_read_is_the_read_error(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    hostile_log(log)
    pieces = cut_at(log, line_starts(log)[60])
    log.unlink()
    with pytest.raises(FileNotFoundError, match=r"mail\.log"):
        in_pieces([log], pieces)
    assert no_children()


def test_a_piece_whose_process_dies_is_a_clear_error_and_leaves_no_process(tmp_path: Path) -> None:
    pieces = [Piece(f"/log/{i}", 0, None, last=True) for i in range(4)]

    def dies(piece: Piece) -> int:
        if piece.path == "/log/1":
            os.kill(os.getpid(), signal.SIGKILL)
        if piece.path == "/log/2":
            raise ValueError("a parser bug")
        time.sleep(0.2)
        return 0

    with pytest.raises(WorkerError, match=r"/log/1 \(bytes 0\.\.end\): .* killed by signal 9"):
        list(parallel.in_processes(pieces, 2, dies))
    assert no_children()
    results = parallel.in_processes(pieces[2:], 2, dies)
    with pytest.raises(WorkerError, match=r"/log/2 \(bytes 0\.\.end\): ValueError: a parser bug"):
        next(results)
    assert no_children()


def test_a_free_worker_takes_the_next_piece(tmp_path: Path) -> None:
    """Persistent workers, not a process per piece: while one worker is held up by its first piece, the other takes
    every later one (the held-up piece waits for the last); the results still come in the pieces' order."""
    gate = tmp_path / "gate"
    pieces = [Piece(f"/log/{i}", 0, None, last=True) for i in range(6)]

    def work(piece: Piece) -> tuple[str, int]:
        if piece.path == "/log/0":
            deadline = time.monotonic() + 30
            while not gate.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        if piece.path == "/log/5":
            gate.touch()
        return piece.path, os.getpid()

    results = list(parallel.in_processes(pieces, 2, work))
    assert [path for path, _ in results] == [piece.path for piece in pieces]
    pids = [pid for _, pid in results]
    assert pids[0] not in pids[1:] and len(set(pids[1:])) == 1
    assert os.getpid() not in pids
    assert no_children()


def test_a_worker_killed_holding_a_later_piece_is_a_clear_error_and_leaves_no_process() -> None:
    """A worker dies in a piece after others it read: the error names the piece it held, and the other worker is
    killed and reaped."""
    pieces = [Piece(f"/log/{i}", 0, None, last=True) for i in range(8)]
    read_here = 0

    def dies(piece: Piece) -> int:
        nonlocal read_here  # counts in each worker: the pieces it has read
        read_here += 1
        if int(piece.path.rsplit("/", 1)[1]) >= 4 and read_here > 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return os.getpid()

    with pytest.raises(WorkerError, match=r"/log/[4-7] \(bytes 0\.\.end\): .* killed by signal 9"):
        list(parallel.in_processes(pieces, 2, dies))
    assert no_children()


def test_stopping_early_kills_the_workers_holding_later_pieces() -> None:
    pieces = [Piece(f"/log/{i}", 0, None, last=True) for i in range(6)]

    def slow(piece: Piece) -> str:
        if piece.path != "/log/0":
            time.sleep(30)
        return piece.path

    results = parallel.in_processes(pieces, 2, slow)
    assert next(results) == "/log/0"
    results.close()
    assert no_children()


def test_many_more_pieces_than_workers_give_the_same_report(
    bench_log: Path, replaced_advance: list[str]
) -> None:
    """Each worker reads piece after piece, each from the pristine state (what it learnt of Google's replies and
    the rules' verdicts kept from one to the next): the report is still the one of one process."""
    expected = one_process([bench_log])
    starts = line_starts(bench_log)
    cuts = [starts[len(starts) * i // 25] for i in range(1, 25)]
    for jobs in (2, 3):
        assert in_pieces([bench_log], cut_at(bench_log, *cuts), jobs=jobs) == expected
    assert replaced_advance == ["exact"] * 50  # 25 pieces, twice


def test_a_copy_of_the_analyser_has_its_state_and_shares_what_it_learnt(bench_log: Path) -> None:
    reader = analyser()
    data = bench_log.read_bytes()
    reader.summarise_block(data[: data.index(b"\n", len(data) // 2) + 1])
    twin = reader.copy()
    assert twin.memory() == reader.memory() and twin.memory()["google_queue_ids"]
    assert twin.context is not reader.context and twin.context.clock is not reader.context.clock
    assert twin.context.google_queue_ids is not reader.context.google_queue_ids
    assert twin.rules is reader.rules  # the rules and their caches of verdicts
    assert reader._fast is not None and twin._fast is not None and twin._fast is not reader._fast
    assert twin._fast.knowledge() == reader._fast.knowledge() and reader._fast.knowledge()[0]
    assert all(a is b for a, b in zip(twin._fast.knowledge(), reader._fast.knowledge(), strict=True))
    before = reader.memory()
    twin.summarise_block(data[len(data) // 2 :])
    assert reader.memory() == before


def run_report(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", *args], capture_output=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory, bench_log: Path) -> Path:
    """Large enough for the command to use two processes by itself."""
    log = tmp_path_factory.mktemp("big") / "mail.log"
    data = bench_log.read_bytes()
    with log.open("wb") as out:
        while out.tell() < 2 * parallel.MIN_PIECE_BYTES + len(data):
            out.write(data)
    return log


def test_the_command_with_two_jobs_prints_what_one_job_prints(big_log: Path) -> None:
    for fmt in ("json", "text"):
        one = run_report("--format", fmt, "--jobs", "1", str(big_log))
        two = run_report("--format", fmt, "--jobs", "2", str(big_log))
        assert one.returncode == two.returncode == 0, two.stderr
        assert two.stdout == one.stdout
    default = run_report("--format", "text", str(big_log))
    assert default.stdout == one.stdout


def test_jobs_must_be_a_positive_number() -> None:
    done = run_report("--jobs", "0", "x.log")
    assert done.returncode == 2
    assert b"--jobs: must be a whole number of processes, 1 or more, not '0'" in done.stderr


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_killing_the_command_kills_its_pieces(big_log: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "report", "--jobs", "2", str(big_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(children_of(proc.pid)) == 2)
        workers = children_of(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: all(gone(pid) for pid in workers))


def test_a_log_of_long_lines_is_still_cut(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    filler = "x" * 3000
    log.write_text(
        "".join(noise(f"Nov 29 10:00:{i % 60:02d}", i).replace("connect", filler) for i in range(2000))
    )
    size = log.stat().st_size
    cut = parallel.safe_cut(str(log), size // 2, analyser())
    assert cut is not None and size // 2 <= cut < size // 2 + 3200
    planned = parallel.plan([str(log)], 2, analyser(), min_piece_bytes=size // 3)
    assert planned is not None and len(planned) == 3  # size // 3 a piece
    assert in_pieces([log], planned) == one_process([log])


def test_a_named_pipe_among_the_files_is_read_once_in_its_place(tmp_path: Path) -> None:
    plain, pipe = tmp_path / "mail.log.1", tmp_path / "pipe"
    hostile_log(plain)
    os.mkfifo(pipe)
    content = tmp_path / "content"
    hostile_log(content)

    def fed(read: Callable[[], str]) -> str:
        def feed() -> None:
            with open(pipe, "wb") as writer:
                writer.write(content.read_bytes())

        writer = threading.Thread(target=feed)
        writer.start()
        try:
            return read()
        finally:
            writer.join(timeout=30)

    expected = fed(lambda: one_process([plain, pipe]))
    planned = parallel.plan([str(plain), str(pipe)], 2, analyser(), min_piece_bytes=1000)
    assert planned is not None and planned[-1] == Piece(str(pipe), 0, None, last=True)
    assert fed(lambda: in_pieces([plain, pipe], planned)) == expected


def test_many_small_files_are_read_in_place_between_pieces(tmp_path: Path) -> None:
    """Rotated logs too small to pay for a process are read by the parent, in order, between the pieces: the
    deferrals they hold join the expiries in the large files after them."""
    base = time.time() - 4 * 86_400
    paths: list[Path] = []
    n = 0
    for part in range(2):
        for i in range(10):
            small = tmp_path / f"small.{part}.{i}"
            small.write_text(deferral(stamp(base + n), f"S{n:05X}", n))
            paths.append(small)
            n += 1
        big = tmp_path / f"big.{part}"
        lines = [noise(stamp(base + n + j // 50), j) for j in range(1500)]
        lines += [expiry(stamp(base + n + 40), f"S{k:05X}") for k in range(0, n, 2)]
        big.write_text("".join(lines))
        paths.append(big)
    expected = one_process(paths)
    assert json.loads(expected.split("\n}\n")[0] + "\n}")["deliveries"]["expired"] == 5 + 10
    planned = parallel.plan([str(p) for p in paths], 2, analyser(), min_piece_bytes=20_000)
    assert planned is not None
    assert [p.path for p in planned if p.local] == [str(p) for p in paths if p.name.startswith("small")]
    assert sum(not p.local for p in planned) >= 4
    assert in_pieces(paths, planned) == expected
