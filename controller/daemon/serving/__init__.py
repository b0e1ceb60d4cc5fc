"""The HTTP side: endpoints, console, status, event and monitor intake, readiness, reads.

The event intake takes OTLP exports too (:mod:`.otlp_intake`).
"""

from controller.daemon.serving.broker_watch import BrokerWatch
from controller.daemon.serving.console import ConsoleData, HoldoutReads
from controller.daemon.serving.endpoints import Parts, health_server, http_server, readiness_of
from controller.daemon.serving.event_intake import EventIntake
from controller.daemon.serving.intake_process import IntakeProcess
from controller.daemon.serving.intake_worker import IntakeWorker
from controller.daemon.serving.otlp_intake import OtlpIntake, translator_of
from controller.daemon.serving.read_worker import ReadWorker
from controller.daemon.serving.starting import StartUp, kafka_of, redis_of
from controller.daemon.serving.status import StatusView
from controller.daemon.serving.store_loss import LossGuard, StoreLoss, loss_alert

__all__ = [
    "BrokerWatch",
    "ConsoleData",
    "EventIntake",
    "HoldoutReads",
    "IntakeProcess",
    "IntakeWorker",
    "LossGuard",
    "OtlpIntake",
    "Parts",
    "ReadWorker",
    "StartUp",
    "StatusView",
    "StoreLoss",
    "health_server",
    "http_server",
    "kafka_of",
    "loss_alert",
    "readiness_of",
    "redis_of",
    "translator_of",
]
