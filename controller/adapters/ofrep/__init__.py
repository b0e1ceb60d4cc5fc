"""OpenFeature Remote Evaluation Protocol: the routes, the evaluation context and the snapshot."""

from controller.adapters.ofrep.routes import OfrepRoutes
from controller.adapters.ofrep.stream_route import StreamBounds

__all__ = [
    "OfrepRoutes",
    "StreamBounds",
]
