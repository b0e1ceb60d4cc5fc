"""The daemon's HTTP API: the views, the event and OTLP intakes, and the server over them.

:func:`serve_http` is the step of the start (see :mod:`.assembly`) that opens the API
port once every part it shows is up; from then on the probes ask the running daemon's
readiness.
"""

from __future__ import annotations

from datetime import timedelta

from controller.adapters.redis import AppKeyStore, JoinJournal, StoreMarker
from controller.adapters.redis import HoldoutReads as HoldoutCells
from controller.daemon.registries import FlagDirectory, KeyBook
from controller.daemon.rollouts import broker_log_ends, evidence_watch
from controller.daemon.running.assembly import Daemon, Run
from controller.daemon.serving import (
    ConsoleData,
    HoldoutReads,
    IntakeProcess,
    IntakeWorker,
    LossGuard,
    OtlpIntake,
    Parts,
    ReadWorker,
    StatusView,
    http_server,
    readiness_of,
    translator_of,
)


async def serve_http(run: Run, daemon: Daemon) -> None:
    """The HTTP API up; from now on the probes ask the running daemon's readiness."""
    settings, redis, when = run.settings, daemon.redis, run.when
    events_in: IntakeProcess | IntakeWorker
    if settings.http.intake_process:
        events_in = await run.enter("intake process", IntakeProcess(settings, metrics=run.metrics))
    else:
        events_in = await run.enter("intake worker", IntakeWorker(settings, metrics=run.metrics))
    reads = await run.enter(
        "read worker",
        ReadWorker(
            settings,
            signer=run.signer,
            clock=when.clock,
            team_windows=when.team_windows,
            sources=daemon.rollouts.sources,
            environments=lambda: daemon.engine.keys.environments,  # reloaded on SIGHUP
            loss=daemon.rollouts.loss,
        ),
    )
    status, console = _views(run, daemon, reads.holdout_report)
    parts = Parts(
        run.metrics,
        redis.store,
        daemon.rollouts.states,
        redis.ingest,
        daemon.engine,
        daemon.kafka.outputs,
        console,
        daemon.kafka.control,
        run.signer,
        status,
        events_in,
        daemon.rollouts.segments,
        KeyBook(AppKeyStore(redis.client, settings=settings.redis)),
        brokers=daemon.brokers,
        reads=reads,
        otlp_in=await _otlp_intake(run, daemon, events_in, reads),
        side_ingests=daemon.side_ingests,
        holdouts=reads.holdout_report,
        loss=LossGuard(daemon.rollouts.loss, StoreMarker(redis.client, settings=settings.redis)),
    )
    await run.enter("http server", http_server(settings, parts))
    run.startup.started(lambda: readiness_of(parts, settings))


def _views(run: Run, daemon: Daemon, holdouts: HoldoutReads) -> tuple[StatusView, ConsoleData]:
    """What the read API and the console show of the rollouts (``holdouts``: the holdouts'
    reports, built by the read worker)."""
    states, when = daemon.rollouts.states, run.when
    status = StatusView(
        states=states,
        aggregates=daemon.redis.store,
        stale_after=timedelta(days=run.settings.engine.stale_after_days),
        clock=when.clock,
        team_windows=when.team_windows,
        sources=daemon.rollouts.sources,
        evidence=evidence_watch(
            daemon.redis.client,
            run.settings,
            when.clock,
            log_ends=broker_log_ends(run.settings),  # a stage about to move shows its wait
        ),
        holdouts=HoldoutCells(
            daemon.redis.client, settings=run.settings.redis, topic=run.settings.topics.events
        ),
    )
    console = ConsoleData(
        states=states,
        history=daemon.rollouts.gate_history,
        status=status,
        clock=when.clock,
        team_windows=when.team_windows,
        pipelines=daemon.engine.pipelines,
        holdouts=holdouts,
        held_out=status.held_out,
    )
    return status, console


async def _otlp_intake(
    run: Run, daemon: Daemon, events_in: IntakeProcess | IntakeWorker, reads: ReadWorker
) -> OtlpIntake | None:
    """OTLP/HTTP over the read worker's flags, sending through the event intake (or none)."""
    http = run.settings.http
    if not http.otlp_enabled:
        return None
    directory = FlagDirectory(reads.rollouts, max_age=http.otlp_flags_max_age_seconds)
    intake = OtlpIntake(
        events=events_in,
        directory=directory,
        translator=translator_of(http, directory.lookup),
        dead_letters=daemon.kafka.dead_letters,
        metrics=run.metrics,
        max_event_bytes=run.settings.ingest.max_event_bytes,
        clock=run.when.clock,
        journal=JoinJournal(
            daemon.redis.client,
            settings=run.settings.redis,
            window_ms=int(http.otlp_join_window_seconds * 1000),
        ),
    )
    return await run.enter("otlp intake", intake)
