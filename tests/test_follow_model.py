"""Model-based test of the follow-and-checkpoint core, as Vector tests its file watcher: random sequences of what an
MTA, logrotate and an operator do to a log and to the exporter, checked against a simple model of what must be
counted (follow_model.py states the model and the environment's rules; the limits of the core the generator keeps
to are stated at `rotation_is_followed` and `cut_is_saved`).

`make test` runs a fixed, derandomized set of sequences; `make test-slow` explores many more.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter

import pytest
from follow_model import GRACE_PASSED, Exporter, LogFile, World, line
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from support import FakeClock

_COMMON = settings(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # The explain phase traces every line run, which makes one shrunk sequence take minutes on Python 3.11.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
FAST = settings(_COMMON, max_examples=80, stateful_step_count=40, derandomize=True)
EXPLORE = settings(_COMMON, max_examples=1000, stateful_step_count=50)


class FollowMachine(RuleBasedStateMachine):
    """The writer, the rotator and the exporter's life cycle, in any order; after every start and look the
    exporter has counted exactly the model's lines."""

    def __init__(self) -> None:
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="follow-model-")
        self.clock = FakeClock()
        self.world: World | None = None
        self.exporter: Exporter | None = None
        self.counted: set[int] = set()
        """Complete lines counted, per the model."""
        self.held: set[LogFile] = set()
        """Files the running exporter holds open: each was at the followed name at one of its looks."""
        self.anchor: LogFile | None = None
        """The file at the followed name at the running exporter's last look (kept while the name is missing)."""
        self.anchor_had_bytes = False
        """The anchor held a byte at that look: the exporter knows its first bytes."""
        self.flushes = 0
        """State writes seen of the running exporter."""
        self.saved_counted: set[int] = set()

    @property
    def w(self) -> World:
        assert self.world is not None
        return self.world

    @property
    def running(self) -> bool:
        return self.exporter is not None

    @property
    def x(self) -> Exporter:
        assert self.exporter is not None
        return self.exporter

    # -- the model --

    def _looked(self) -> None:
        """After a start or a look: every complete line of a reachable file is counted."""
        live = self.w.live()
        if live is not None:
            self.held.add(live)
            self.anchor = live
            self.anchor_had_bytes = bool(live.lines) or self.w.pending_in_live()
        for f in self.w.files:  # a look reads on from a cut in the file it reads (or reads a new file whole)
            f.cut_seen = f.cut_unsaved
        for f in self.w.reachable(self.held):
            self.counted.update(f.lines)
        if self.x.flushes != self.flushes:  # the start position was written at once
            self._saved()
        self.check()

    def _saved(self) -> None:
        self.flushes = self.x.flushes
        self.saved_counted = set(self.counted)
        for f in self.w.files:
            if f.cut_seen:
                f.cut_unsaved = f.cut_seen = f.written_after_cut = False

    def rotation_is_followed(self, *, copy: bool) -> bool:
        """The limit *Unknown rotation* (docs/reliability.md): the core finds a file rotated away by where the file it
        knows went, and a copytruncate
        copy by the first bytes it read. So the file at the name is rotated only when the exporter knows it (for
        copytruncate, its first bytes), or knows a file of the same family still there; it knows what it saw at its
        last look, and, should it be killed, what its position (saved or to be saved) names. A file it did not see
        is read once found rotated away, but passed over when empty, so the MTA does not write to it then. And the
        writer has let go of the previous rotated file: one rotated file is drained at a time."""
        live = self.w.live()
        if live is None or (not copy and self.w.writer_fd is not None and self.w.writer_elsewhere()):
            return False
        if copy and live in self.known_by_inode_only():
            return False
        unseen_empty = (
            not copy and self.w.writer_file is live and not live.lines and not self.w.pending_in_live()
        )

        def follows(known: LogFile | None) -> bool:
            if known is live:
                return True
            return (
                not unseen_empty
                and known is not None
                and known.path is not None
                and known.origin == live.origin
            )

        positions = [self.w.saved_position(), self.x.position() if self.running else None]
        if not all(
            follows(None if p is None else self.w.file_of(p.ident)) for p in positions if p is not None
        ):
            return False
        if positions[0] is None:
            return False
        if not self.running:
            return True
        if live in self.held:
            return not copy or self.anchor_had_bytes
        return follows(self.anchor)

    def known_by_inode_only(self) -> list[LogFile]:
        """Files a position (saved, or to be saved) knows by inode only, no byte of them read when it was taken: a
        restart cannot find them once copied and truncated or compressed."""
        positions = [self.w.saved_position(), self.x.position() if self.running else None]
        return [
            f
            for p in positions
            for q in (p, p and p.draining)
            if q is not None and q.ident.fingerprint_len == 0 and (f := self.w.file_of(q.ident)) is not None
        ]

    def cut_is_saved(self, *, seen: bool = False) -> bool:
        """The limit *Cut while down* (docs/reliability.md): a restart whose saved position predates a cut to a
        middle offset cannot tell lines
        written after the cut from the lines kept (it reads on after the last line). So no line is written to a cut
        log before a state write that followed a look at the cut (with `seen`: before such a look) when the
        exporter may die; while it is down, none is written to a log cut since its last state write."""
        return not any(
            f.cut_unsaved and f.written_after_cut and not (seen and f.cut_seen) for f in self.w.files
        )

    def check(self, *, settled: bool = False) -> None:
        complete = {line(n).rstrip(b"\n"): n for n in range(self.w.written())}
        got = self.x.delivered
        twice = {complete[b]: c for b, c in got.items() if b in complete and c != 1}
        assert not twice, f"lines counted more than once: {twice}"
        got_complete = {complete[b] for b in got if b in complete}
        missing = sorted(self.counted - got_complete)
        extra = sorted(got_complete - self.counted)
        assert not missing and not extra, f"lines missing: {missing}; counted but not due: {extra}"
        # Unterminated last lines, by their bytes (two can be alike: the first bytes of two lines).
        got_fragments = Counter({b: c for b, c in got.items() if b not in complete})
        fragments = Counter(self.w.fragments())
        if settled:
            assert got_fragments == fragments, "unterminated last lines"
        else:
            assert got_fragments <= fragments, "unterminated last lines"
        assert self.x.sent() == len(self.counted)
        assert self.x.lines() + self.x.held_lines() == sum(got.values())

    # -- start --

    @initialize(link=st.booleans(), late=st.booleans())
    def begin(self, link: bool, late: bool) -> None:
        """The exporter starts on an empty log (or before the log exists: `late`), plain or behind a symlink."""
        self.world = World(self.root, link=link)
        if not late:
            self.w.reopen()
        self._start()

    def _start(self) -> None:
        for f in self.w.files:  # the start reads on after a cut (nothing was written after it while down)
            f.cut_seen = f.cut_unsaved
        self.exporter = Exporter(self.w, self.clock)
        self._looked()

    # -- the writer --

    def _may_write(self) -> bool:
        f = self.w.writer_file
        return self.w.writer_fd is not None and (self.running or f is None or not f.cut_unsaved)

    @precondition(lambda self: self._may_write())
    @rule(count=st.integers(1, 3))
    def append(self, count: int) -> None:
        self.w.append(count)

    @precondition(lambda self: self._may_write())
    @rule(first=st.integers(1, 160))
    def append_split(self, first: int) -> None:
        self.w.append_split(first)

    @precondition(lambda self: self.w.writer_elsewhere())
    @rule()
    def reopen(self) -> None:
        self.w.reopen()

    # -- the rotator --

    @precondition(lambda self: self.rotation_is_followed(copy=False))
    @rule()
    def rotate_rename(self) -> None:
        self.w.rotate_rename()

    @precondition(lambda self: not self.w.pending_in_live() and self.rotation_is_followed(copy=True))
    @rule()
    def copytruncate(self) -> None:
        self.w.copytruncate()

    @precondition(lambda self: bool(self.w.cuts()))
    @rule(keep=st.integers(0, 20))
    def truncate(self, keep: int) -> None:
        cuts = self.w.cuts()
        self.w.truncate(cuts[min(keep, len(cuts) - 1)])

    @precondition(lambda self: self.w.live() is not None)
    @rule()
    def delete(self) -> None:
        self.w.delete()

    def compressible(self) -> list[LogFile]:
        known = self.known_by_inode_only()
        return [f for f in self.w.compressible() if f not in known]

    @precondition(lambda self: bool(self.compressible()))
    @rule(which=st.integers(0, 7))
    def compress(self, which: int) -> None:
        candidates = self.compressible()
        self.w.compress(candidates[which % len(candidates)])

    @precondition(
        lambda self: self.w.link and (self.w.live() is None or self.rotation_is_followed(copy=False))
    )
    @rule()
    def repoint(self) -> None:
        self.w.repoint()

    # -- the exporter --

    @precondition(lambda self: self.running)
    @rule()
    def look(self) -> None:
        self.x.look()
        self._looked()

    @precondition(lambda self: self.running and not self.w.writer_elsewhere())
    @rule()
    def time_passes(self) -> None:
        """More than the drain grace passes; the writer writes to the live file, as the MTA has let go of the
        rotated one by then."""
        self.clock.advance(GRACE_PASSED)

    @precondition(lambda self: self.running)
    @rule()
    def checkpoint(self) -> None:
        self.x.flush()
        self._saved()

    @precondition(lambda self: self.running)
    @rule()
    def reload(self) -> None:
        self.x.reload()

    @precondition(lambda self: self.running and self.cut_is_saved(seen=True))
    @rule()
    def stop(self) -> None:
        self.x.stop()
        self._saved()
        self._down()

    @precondition(lambda self: self.running and self.cut_is_saved())
    @rule()
    def kill_9(self) -> None:
        self.x.kill()
        self.counted = set(self.saved_counted)
        self._down()

    def _down(self) -> None:
        self.exporter = None
        self.held = set()
        self.anchor = None
        self.flushes = 0

    @precondition(lambda self: not self.running)
    @rule()
    def restart(self) -> None:
        self._start()

    # -- the end --

    def settle(self) -> None:
        """Everything that can be counted is: the exporter runs, the writer is on the live file, the drain grace
        passes twice with a look after each. Then a clean stop and a restart count nothing more."""
        if not self.running:
            self._start()
        if self.w.writer_elsewhere():  # so that every other file is left
            self.w.reopen()
        self.look()
        for _ in range(2):
            self.clock.advance(GRACE_PASSED)
            self.look()
        self.check(settled=True)
        self.stop()
        self._start()
        self.check(settled=True)

    def teardown(self) -> None:
        try:
            if self.world is not None and sys.exc_info()[0] is None:
                self.settle()
        finally:
            if self.exporter is not None:
                self.exporter.kill()
            if self.world is not None:
                self.world.close()
            shutil.rmtree(self.root, ignore_errors=True)


def test_every_line_is_counted_once_through_any_sequence() -> None:
    run_state_machine_as_test(FollowMachine, settings=FAST)


@pytest.mark.slow
@pytest.mark.timeout(3600)  # shrinking a failure found late may take minutes
def test_every_line_is_counted_once_through_many_more_sequences() -> None:
    run_state_machine_as_test(FollowMachine, settings=EXPLORE)
