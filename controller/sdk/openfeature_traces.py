"""The OpenFeature provider's evaluations on the app's own traces (:mod:`controller.sdk.traces`).

:class:`TraceHook` is a provider hook of
:class:`~controller.sdk.openfeature.RolloutProvider` (unless it is made with
``traces=False``): after every evaluation, successful or not, it adds the
semantic conventions' ``feature_flag.evaluation`` event to the app's current
span, with the flag version from the resolution's metadata, which
OpenFeature's own Python hook (``openfeature-hooks-opentelemetry``) leaves
out. An app that installs that hook as well records each evaluation twice;
it should make the provider with ``traces=False`` or drop that hook.
"""

from __future__ import annotations

from typing import Any

from openfeature.flag_evaluation import FlagEvaluationDetails
from openfeature.hook import Hook, HookContext, HookHints

from controller.sdk.traces import evaluation_attributes, record_event


class TraceHook(Hook):
    """After each evaluation, its event on the app's current span, if one is recording."""

    def finally_after(
        self,
        hook_context: HookContext,
        details: FlagEvaluationDetails[Any],
        hints: HookHints,
    ) -> None:
        record_event(lambda: details_attributes(hook_context, details))


def details_attributes(
    hook_context: HookContext, details: FlagEvaluationDetails[Any]
) -> dict[str, str]:
    """The event's attributes for one resolution, as OpenFeature reports it to the app."""
    version = details.flag_metadata.get("version")
    error = details.error_code
    return evaluation_attributes(
        details.flag_key,
        reason=str(details.reason or "unknown"),
        value=details.value,
        variant=details.variant,
        unit=hook_context.evaluation_context.targeting_key,
        version=version if isinstance(version, int) and not isinstance(version, bool) else None,
        error=str(error) if error is not None else None,
        message=details.error_message or "",
    )
