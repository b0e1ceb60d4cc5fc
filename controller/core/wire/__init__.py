"""What travels on the wire: messages, decoding, flag states, bucketing and evaluation.

Shipped in the SDK wheel: apps evaluate flags with the same code the controller does.
"""

from controller.core.wire import flagstates
from controller.core.wire.arm_values import ArmValues
from controller.core.wire.bucketing import BUCKETS, assign, bucket, threshold
from controller.core.wire.contract_texts import (
    DEFAULT_TOPICS,
    DLQ_REASONS,
    SCHEMA_TEXT,
    TOPIC_KEYS,
    TOPICS,
    Topic,
)
from controller.core.wire.decoding import (
    MAX_DETAIL_CHARS,
    MAX_NESTING,
    ConversionIn,
    EventDecoder,
    ExposureIn,
    InEvent,
    Rejection,
    RejectReason,
    RequestIn,
    nesting_exceeds,
    summarize,
)
from controller.core.wire.evaluation import (
    NO_ATTRIBUTES,
    ErrorCode,
    Evaluation,
    Reason,
    evaluate,
    rule_context,
    unit_problem,
)
from controller.core.wire.flagstates import Verdict, supersedes
from controller.core.wire.messages import (
    PUBLISHED_MODELS,
    Alert,
    Arm,
    Command,
    CommandAction,
    Decision,
    FlagState,
    FlagStatus,
    MonitorAlert,
    decision_or_alert,
)
from controller.core.wire.segment_messages import (
    SEGMENT_MODELS,
    SegmentCommand,
    SegmentName,
    SegmentPart,
    SegmentRecord,
    decision_key,
    part_key,
    signed_bytes,
)

__all__ = [
    "BUCKETS",
    "DEFAULT_TOPICS",
    "DLQ_REASONS",
    "MAX_DETAIL_CHARS",
    "MAX_NESTING",
    "NO_ATTRIBUTES",
    "PUBLISHED_MODELS",
    "SCHEMA_TEXT",
    "SEGMENT_MODELS",
    "TOPICS",
    "TOPIC_KEYS",
    "Alert",
    "Arm",
    "ArmValues",
    "Command",
    "CommandAction",
    "ConversionIn",
    "Decision",
    "ErrorCode",
    "Evaluation",
    "EventDecoder",
    "ExposureIn",
    "FlagState",
    "FlagStatus",
    "InEvent",
    "MonitorAlert",
    "Reason",
    "RejectReason",
    "Rejection",
    "RequestIn",
    "SegmentCommand",
    "SegmentName",
    "SegmentPart",
    "SegmentRecord",
    "Topic",
    "Verdict",
    "assign",
    "bucket",
    "decision_key",
    "decision_or_alert",
    "evaluate",
    "flagstates",
    "nesting_exceeds",
    "part_key",
    "rule_context",
    "signed_bytes",
    "summarize",
    "supersedes",
    "threshold",
    "unit_problem",
]
