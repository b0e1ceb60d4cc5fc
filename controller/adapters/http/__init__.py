"""The daemon's HTTP side: the API server and its routes, the probes' listener, app access.

The server (``server``) mounts the read API, the console, the event intake, segments,
pipelines, the app keys' list and the commands' check; the health listener (``health``)
serves the probes on a port of its own. The OFREP and OTLP wings stand on this one: they
guard their routes with its app access and answer as its event intake does.
"""

from controller.adapters.http.app_access import (
    EXPOSED,
    Alternative,
    AppAccess,
    Handler,
    KeyListRoute,
    client_of,
    key_of,
    open_access,
)
from controller.adapters.http.command_check_routes import CommandCheckRoute
from controller.adapters.http.event_intake import (
    Accepted,
    BatchNotSent,
    ChangedEvents,
    EventIntakeRoutes,
    EventSink,
)
from controller.adapters.http.health import HealthServer
from controller.adapters.http.holdout_routes import HoldoutRoutes
from controller.adapters.http.pipeline_routes import PipelineRoutes
from controller.adapters.http.read_routes import AppReadGuard
from controller.adapters.http.segment_routes import SegmentRoutes
from controller.adapters.http.server import HttpServer
from controller.adapters.http.web_console import is_loopback

__all__ = [
    "EXPOSED",
    "Accepted",
    "Alternative",
    "AppAccess",
    "AppReadGuard",
    "BatchNotSent",
    "ChangedEvents",
    "CommandCheckRoute",
    "EventIntakeRoutes",
    "EventSink",
    "Handler",
    "HealthServer",
    "HoldoutRoutes",
    "HttpServer",
    "KeyListRoute",
    "PipelineRoutes",
    "SegmentRoutes",
    "client_of",
    "is_loopback",
    "key_of",
    "open_access",
]
