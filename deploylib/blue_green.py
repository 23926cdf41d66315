"""Blue-green on each target: a release starts on the idle slot, is checked there, and goes live
by a proxy switch; the slot that was live keeps running, idle, so going back is a proxy switch.

A deploy (``Runner._go_live``) calls ``start`` (wait out the idle slot's drain, stop what runs
there, start the new release), runs the pipeline's checks against that slot (``{port}``), may
``weigh`` (a weighted canary: the new slot takes ``weight`` percent of the requests while its
checks repeat), then ``go_live``. Putting a target back (``Recovery``) and a rollback call
``go_to``: the slot that runs the release is checked with one attempt and switched to; if it no
longer answers (a reboot), or no slot runs the release, the release is started on a free slot,
checked with the pipeline's retries, then switched to. ``stop_unwanted`` stops a new release
that was started but never went live (a failed deploy), so no slot runs a release that is gone.

What each slot runs and which one is live is recorded on the target (``.deploylib/slots.json``)
by the same commands that change it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from deploylib.config import Environment
from deploylib.errors import StepFailed
from deploylib.fleet import Target
from deploylib.remote import release as remote_release
from deploylib.remote import slots as remote_slots
from deploylib.run_state import Run
from deploylib.slots import Slot, SlotRecord, SlotState, slots_of
from deploylib.step_execution import StepExecution
from deploylib.steps import Switch
from deploylib.steps.slots import GoLive, StartOnSlot, StopSlot, Weigh


class BlueGreen:
    """The slot switches of one run, through ``steps``; ``wait`` sleeps, cut short by Ctrl-C."""

    def __init__(
        self,
        run: Run,
        steps: StepExecution,
        switch: Switch,
        wait: Callable[[float], None],
        now: Callable[[], float] = time.time,
    ) -> None:
        env: Environment = run.env
        assert env.strategy.ports is not None
        self.run = run
        self.steps = steps
        self.switch = switch
        self.wait = wait
        self.now = now
        self.slots = slots_of(env.strategy.ports)
        self.drain = float(env.strategy.drain) if not isinstance(env.strategy.drain, str) else 0
        #: a swarm service runs on the slots (``orchestrator = "swarm"``): swarm stops the old
        #: release's tasks itself, once the new ones are healthy, so the slot that was live
        #: stays in the proxy as a backup until the switch, runs nothing after it, and has
        #: nothing to drain
        self.swarm = env.orchestrator == "swarm"
        if self.swarm:
            self.drain = 0.0

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)

    @staticmethod
    def state(target: Target) -> SlotState:
        return target.state.slots or SlotState()

    # ------------------------------------------------------------------ a deploy

    def start(self, batch: Sequence[Target], release: str) -> dict[str, BaseException]:
        """The new release on each target's idle slot; the errors by target name."""

        def start(target: Target) -> None:
            self._square_with_proxy(target)
            self._start_on(target, self.state(target).idle(), release)

        return self.run.each(start, batch)

    def weigh(self, batch: Sequence[Target], release: str, weight: int) -> dict[str, BaseException]:
        """``weight`` percent of each target's requests to the slot the new release started on,
        the rest to the live slot (all of them, when no slot was live)."""
        run = self.run

        def weigh(target: Target) -> None:
            assert target.slot is not None
            live = self.state(target).live
            servers: tuple[tuple[int, int | None], ...] = ((target.slot.port, None),)
            if live is not None and live != target.slot.name:
                servers = ((self.slot(live).port, 100 - weight), (target.slot.port, weight))
            target.switching(release)  # from here on, a failure puts the proxy back
            run.emit(
                "weigh",
                f"{weight}% of requests to {target.slot.name} ({release})",
                host=target.name,
            )
            self.steps.run_on(Weigh(servers=servers), target, release)

        return run.each(weigh, batch)

    def go_live(self, batch: Sequence[Target], release: str) -> dict[str, BaseException]:
        """Each target's proxy at the slot its new release was started and checked on."""
        return self.run.each(lambda t: self._switch_to(t, release, restoring=False), batch)

    # ------------------------------------------------------------------ going back

    def go_to(self, target: Target, release: str | None, *, restoring: bool) -> None:
        """``target`` live on ``release``: its slot if that still answers, else started again
        (on its slot, or the free one) and checked first. ``None``: no release (a put-back on
        a target that had none): ``current`` goes, the proxy is left as it is."""
        run = self.run
        if not restoring:
            self._square_with_proxy(target)  # a rollback: the record may be stale
        state = self.state(target)
        if release is None:
            unset = remote_release.switch_command(run.layout, None, target.token)
            result = run.execute(target, unset, "rollback")
            if not result.ok:
                raise StepFailed("rollback", target.name, run.summary(result), result)
            target.moved_to(None)
            record = remote_slots.record_slots_command(
                run.layout, state.unset(self.now()), target.token
            )
            if run.execute(target, record, "rollback").ok:
                target.slots_recorded(state.unset(self.now()))
            return
        name = state.running(release)
        if name is not None and not self._answers(target, self.slot(name), release):
            run.emit(
                "warning",
                f"slot {name} does not answer for {release}: starting it there again",
                host=target.name,
            )
            self._start_on(target, name, release, restoring=restoring)
            self._checked(target, release)
        elif name is None:
            self._start_on(target, state.idle(), release, restoring=restoring)
            self._checked(target, release)
        self._switch_to(target, release, restoring=restoring)

    def stop_unwanted(self, release: str, targets: Sequence[Target]) -> None:
        """Stop ``release`` where it was started on a slot that is not live (a failed deploy):
        no slot keeps running a release that is removed. Nor is it stopped where the proxy
        went to it and could not be put back (``current`` there, or maybe): like its directory,
        it stays. A failure is a warning."""
        run = self.run

        def stop(target: Target) -> None:
            state = self.state(target)
            name = state.running(release)
            live_here = target.current == release or target.uncertain
            if name is None or name == state.live or live_here:
                return
            target.on_slot(self.slot(name))
            stopped = state.stopped(name)
            self.steps.run_on(StopSlot(switch=self.switch, slots=stopped), target, release)
            target.slots_recorded(stopped)

        for name, error in run.each(stop, [t for t in targets if t.locked]).items():
            run.emit(
                "warning",
                f"could not stop {release} on its slot: {run.redact(str(error))}",
                host=name,
            )

    # ------------------------------------------------------------------ the parts

    def _square_with_proxy(self, target: Target) -> None:
        """The slot record squared with the proxy, which is what decides where requests go:
        no slot nginx sends requests to is ever taken for the idle one and stopped. The
        upstream file is read; when it names another slot than the record's live one (a record
        missing, damaged or edited by hand), the file's slot is live, running the release the
        record gives it, else ``current`` (the two are switched together). A file that names
        both slots (a weighted canary whose deploy was killed) is first made to name the live
        slot alone; the other drains. While no release is current nothing serves yet, and the
        record is taken as it is."""
        run = self.run
        state = self.state(target)
        current = target.state.current
        if current is None:
            return
        strategy = run.env.strategy
        assert strategy.upstream_file
        upstream_file = self.steps.context(target).path(strategy.upstream_file)
        result = run.execute(target, remote_slots.read_upstream_command(upstream_file), "start")
        if not result.ok:
            if result.unreachable:
                target.connection_lost()
            raise StepFailed("start", target.name, run.summary(result), result)
        ports = remote_slots.upstream_ports(result.stdout)
        serving = [slot.name for slot in self.slots if slot.port in ports]
        if not serving or serving == [state.live]:
            return
        slots = dict(state.slots)
        if len(serving) == 1:
            live = serving[0]
            run.emit(
                "warning",
                f"slots.json says {state.live or 'no slot'} is live, but the proxy sends "
                f"every request to {live}: going by the proxy",
                host=target.name,
            )
        else:
            on_current = [name for name in serving if state.record(name).release == current]
            live = state.live or (on_current[0] if len(on_current) == 1 else "")
            if not live:
                raise StepFailed(
                    "start",
                    target.name,
                    f"the proxy sends requests to both slots ({upstream_file}) and slots.json "
                    "does not say which one is live: point that file at one of them",
                )
            other = next(name for name in serving if name != live)
            run.emit(
                "warning",
                f"the proxy still shares requests between the slots (a weighted canary cut "
                f"off): all of them to {live} first; {other} drains",
                host=target.name,
            )
            servers = ((self.slot(live).port, None),)
            self.steps.run_on(Weigh(name="proxy", servers=servers), target, current)
            slots[other] = SlotRecord(state.record(other).release, self.now())
        release = state.record(live).release or current
        for name, record in state.slots.items():
            if name != live and record.release == release:
                slots[name] = SlotRecord(None, slots[name].idle_since)  # not on both slots
        slots[live] = SlotRecord(release, None)
        target.slots_recorded(SlotState(live, slots))

    def _start_on(
        self, target: Target, name: str, release: str, *, restoring: bool = False
    ) -> None:
        """Wait out slot ``name``'s drain, stop what runs there, start ``release`` on it."""
        state = self.state(target)
        slot = self.slot(name)
        target.on_slot(slot)
        left = state.drain_left(name, self.drain, self.now())
        if left > 0 and name != state.live:
            self.run.emit(
                "drain",
                f"slot {name} took traffic {self.drain - left:.0f} s ago: waiting {left:.1f} s "
                "for its requests before it is stopped",
                host=target.name,
            )
            self.wait(left)
        started = state.started(name, release)
        # recorded before it runs, as on the target: a start that fails or is cut off may have
        # left the release running there, and a failed deploy must stop it (``stop_unwanted``)
        target.slots_recorded(started)
        step = StartOnSlot(switch=self.switch, slots=started)
        self.steps.run_on(step, target, release, restoring=restoring)

    def _switch_to(self, target: Target, release: str, *, restoring: bool) -> None:
        """The proxy at ``target.slot``, ``current`` at ``release``, the record updated."""
        assert target.slot is not None
        name = target.slot.name
        state = self.state(target)
        if state.running(release) != name:
            state = state.started(name, release)
        live = state.switched(name, self.now())
        backup: tuple[int, ...] = ()
        if self.swarm:
            others = [slot for slot in self.slots if slot.name != name]
            for other in others:
                live = live.stopped(other.name)
            backup = tuple(slot.port for slot in others)
        step = GoLive(slots=live, backup=backup)
        try:
            self.steps.run_on(step, target, release, restoring=restoring)
        except BaseException:
            if target.current == release and not target.uncertain:
                target.slots_recorded(live)  # the proxy went there: it is live, as recorded
            raise
        target.slots_recorded(live)
        self.run.emit(
            "slot", f"{name} (port {target.slot.port}) is live: {release}", host=target.name
        )

    def _answers(self, target: Target, slot: Slot, release: str) -> bool:
        """Whether ``slot`` still serves: the pipeline's checks against it, one attempt each
        (no checks: the record is trusted)."""
        target.on_slot(slot)
        for verify_step in self.steps.phases.post:
            if verify_step.retry is None:
                continue
            try:
                self.steps.run_on(verify_step, target, release, attempts=1)
            except StepFailed:
                return False
        return True

    def _checked(self, target: Target, release: str) -> None:
        """The pipeline's checks against ``target.slot``, with their retries; raises."""
        for verify_step in self.steps.phases.post:
            if verify_step.retry is not None:
                self.steps.run_on(verify_step, target, release)
