"""The MCP server's tools: reads, and proposals a person signs.

Every tool reads; none writes. The read tools say so (``readOnlyHint``). The
propose tools return an unsigned command and the line a person runs to sign
and send it (:mod:`controller.ctl.agent.proposing`); they are not read-only in
spirit, since what they hand on is meant to act, and the pause and kill
proposals carry ``destructiveHint``. The server holds no operator key, so
nothing it returns can act before a person signs it. A tool that cannot
answer (a bad flag key, no rollout, the controller unreachable) fails with the
reason, as an error result the agent reads.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from controller import __version__
from controller.core.common import ControllerError
from controller.core.reading import PipelineRun, RolloutList, RolloutStatus
from controller.core.wire import CommandAction
from controller.ctl.agent import drafts, proposing
from controller.ctl.agent.proposing import Proposal
from controller.ctl.agent.reading import Hold, LatestDecision, Reader, RecentAlerts, key_of

NAME = "rollout-controller"
INSTRUCTIONS = (
    "Reads rollouts from a rollout-controller and proposes commands. Proposals are unsigned: "
    "nothing changes until a person signs and sends one with rolloutctl, and the controller "
    "rejects a proposal as stale once the flag has changed since it was made."
)
READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
PROPOSE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
PROPOSE_DESTRUCTIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, open_world_hint=False
)
ONLY_PROPOSES = (
    " This only proposes: it returns an unsigned command and the rolloutctl line a person runs "
    "to sign and send it; nothing is applied, and the controller refuses the command once the "
    "flag has changed since."
)

Flag = Annotated[str, Field(max_length=128, description="The flag's own key.")]
Environment = Annotated[
    str | None, Field(max_length=32, description="Its environment; none: the default one.")
]
Reason = Annotated[str, Field(max_length=500, description="Why, for the audit trail.")]
_P = ParamSpec("_P")
_R = TypeVar("_R")


def told(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn``, its failures told to the agent as the reason (the SDK hides unexpected ones)."""

    @functools.wraps(fn)
    def tool(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (ControllerError, OSError) as exc:
            raise ToolError(str(exc)) from exc

    return tool


def build(reader: Reader) -> MCPServer[Any]:
    """The server, its tools reading through ``reader``."""
    # Warnings only: at INFO the HTTP client logs every read the tools make.
    server: MCPServer[Any] = MCPServer(
        NAME, version=__version__, instructions=INSTRUCTIONS, log_level="WARNING"
    )
    _add_reads(server, reader)
    _add_proposals(server, reader)
    _add_drafts(server)
    return server


def _add_reads(server: MCPServer[Any], reader: Reader) -> None:
    @server.tool(annotations=READ)
    @told
    def list_rollouts() -> RolloutList:
        """Every rollout: phase, stage, percent, flag version and the gate's current view."""
        return reader.rollouts()

    @server.tool(annotations=READ)
    @told
    def rollout_status(flag: Flag, environment: Environment = None) -> RolloutStatus:
        """One rollout in detail: where it is, the gate's verdict and its evidence."""
        found = reader.status(flag, environment)
        if found is None:
            raise ControllerError(f"no rollout for flag {key_of(flag, environment)!r}")
        return found

    @server.tool(annotations=READ)
    @told
    def latest_decision(flag: Flag, environment: Environment = None) -> LatestDecision:
        """The newest decision the controller published for the flag, with its evidence."""
        return reader.latest_decision(flag, environment)

    @server.tool(annotations=READ)
    @told
    def why_holding(flag: Flag, environment: Environment = None) -> Hold:
        """Why the rollout is not moving (a pause, a window, the gate, its minimums), if not,
        and what its stage still needs: time left, units per arm, untested guardrails."""
        return reader.hold(flag, environment)

    @server.tool(annotations=READ)
    @told
    def rollout_report(flag: Flag, environment: Environment = None) -> str:
        """The rollout's report in Markdown: stages, arms, guardrails, every decision."""
        return reader.report(flag, environment)

    @server.tool(annotations=READ)
    @told
    def pipeline_status(flag: Flag) -> PipelineRun:
        """The flag's newest release pipeline run: each environment's state, who must approve."""
        found = reader.pipeline(flag)
        if found is None:
            raise ControllerError(f"no pipeline run for flag {flag!r}")
        return found

    @server.tool(annotations=READ)
    @told
    def recent_alerts(
        flag: Annotated[str | None, Field(max_length=128)] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> RecentAlerts:
        """The latest alerts (of one flag, or of every flag), oldest first."""
        return reader.alerts(flag, limit)


def _add_proposals(server: MCPServer[Any], reader: Reader) -> None:
    def proposal(
        action: CommandAction, flag: str, environment: str | None, reason: str, **extra: Any
    ) -> Proposal:
        against = proposing.made_against(
            key_of(flag, environment), reader.status(flag, environment)
        )
        return proposing.propose(
            action, flag, against, reason=reason, environment=environment, **extra
        )

    @server.tool(annotations=PROPOSE_DESTRUCTIVE, description=_said("Propose pausing a rollout."))
    @told
    def propose_pause(flag: Flag, reason: Reason, environment: Environment = None) -> Proposal:
        return proposal(CommandAction.PAUSE, flag, environment, reason)

    @server.tool(
        annotations=PROPOSE_DESTRUCTIVE,
        description=_said("Propose killing the flag: every unit gets control."),
    )
    @told
    def propose_kill(flag: Flag, reason: Reason, environment: Environment = None) -> Proposal:
        return proposal(CommandAction.KILL, flag, environment, reason)

    @server.tool(
        annotations=PROPOSE,
        description=_said("Propose advancing to the next stage (to 100% with to_end)."),
    )
    @told
    def propose_promote(
        flag: Flag, reason: Reason, to_end: bool = False, environment: Environment = None
    ) -> Proposal:
        return proposal(CommandAction.PROMOTE, flag, environment, reason, to_end=to_end)

    @server.tool(
        annotations=PROPOSE,
        description=_said("Propose starting a rollout with a plan (YAML, checked first)."),
    )
    @told
    def propose_start(
        flag: Flag,
        plan_yaml: Annotated[str, Field(max_length=proposing.MAX_PLAN_CHARS)],
        reason: Reason,
        environment: Environment = None,
    ) -> Proposal:
        plan = proposing.plan_of(plan_yaml)
        return proposal(CommandAction.START, flag, environment, reason, plan=plan)


def _add_drafts(server: MCPServer[Any]) -> None:
    @server.tool(annotations=READ)
    @told
    def draft_rule(
        rule: Annotated[str, Field(max_length=4096, description="A rule in the text form.")],
    ) -> drafts.RuleDraft:
        """Check an audience rule: as the controller reads it, and what its lint finds. Nothing
        is applied; a rule acts only in a plan a person starts."""
        return drafts.rule_draft(rule)

    @server.tool(annotations=READ)
    @told
    def draft_rings(
        rings: Annotated[list[drafts.Ring], Field(min_length=1, max_length=drafts.MAX_RINGS_GIVEN)],
    ) -> drafts.RingsDraft:
        """Make rings (each an audience, or everyone, and the percent of it served) into a
        plan's YAML, linted, for propose_start. Nothing is applied."""
        return drafts.rings_draft(rings)


def _said(what: str) -> str:
    return what + ONLY_PROPOSES
