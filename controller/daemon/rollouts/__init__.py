"""The one writer of rollouts and its loops: engine, commands, gates, consulting, containment."""

from controller.daemon.rollouts.completeness import (
    EvidenceWatch,
    IngestProgress,
    broker_log_ends,
    evidence_watch,
)
from controller.daemon.rollouts.engine import Clock, Engine, build_engine
from controller.daemon.rollouts.history import Recorder
from controller.daemon.rollouts.ownership import Ownership
from controller.daemon.rollouts.rollouts import Rollouts
from controller.daemon.rollouts.sources import SourceReadings
from controller.daemon.rollouts.team_windows import read_windows_file

__all__ = [
    "Clock",
    "Engine",
    "EvidenceWatch",
    "IngestProgress",
    "Ownership",
    "Recorder",
    "Rollouts",
    "SourceReadings",
    "broker_log_ends",
    "build_engine",
    "evidence_watch",
    "read_windows_file",
]
