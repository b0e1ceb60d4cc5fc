"""Guardrails from a metrics server (Prometheus): query templates, the plan's queries, answers.

Pure: templates are scanned and filled here, answers read into numbers; the
server is asked by an adapter behind :class:`controller.ports.MetricSource`.
"""

from controller.core.metrics_source.burn import (
    WORKBOOK_TIERS,
    BurnRate,
    BurnTier,
    Tier,
    default_short,
    window_name,
)
from controller.core.metrics_source.queries import (
    COUNTED,
    HISTOGRAMS,
    ArmLabels,
    PrometheusLimit,
    PrometheusQueries,
    source_problem,
)
from controller.core.metrics_source.readings import (
    MAX_SERIES,
    Answer,
    Ask,
    Failing,
    FlagReadings,
    ReadingProblem,
    Series,
    Stage,
    Taken,
    cumulative_buckets,
    one_number,
    scalar,
)
from controller.core.metrics_source.sight import (
    SELECTOR_LABEL,
    newest_sample_query,
    selectors,
    sight_problem,
)
from controller.core.metrics_source.templates import (
    PLACEHOLDERS,
    SAFE_VALUE,
    Template,
    TemplateError,
    UnsafeValue,
    duration,
    fill,
    parse_template,
    safe_value,
)

__all__ = [
    "COUNTED",
    "HISTOGRAMS",
    "MAX_SERIES",
    "PLACEHOLDERS",
    "SAFE_VALUE",
    "SELECTOR_LABEL",
    "WORKBOOK_TIERS",
    "Answer",
    "ArmLabels",
    "Ask",
    "BurnRate",
    "BurnTier",
    "Failing",
    "FlagReadings",
    "PrometheusLimit",
    "PrometheusQueries",
    "ReadingProblem",
    "Series",
    "Stage",
    "Taken",
    "Template",
    "TemplateError",
    "Tier",
    "UnsafeValue",
    "cumulative_buckets",
    "default_short",
    "duration",
    "fill",
    "newest_sample_query",
    "one_number",
    "parse_template",
    "safe_value",
    "scalar",
    "selectors",
    "sight_problem",
    "source_problem",
    "window_name",
]
