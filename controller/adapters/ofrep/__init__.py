"""OpenFeature Remote Evaluation Protocol: the routes, the evaluation context and the snapshot."""

from controller.adapters.ofrep.routes import OfrepRoutes

__all__ = [
    "OfrepRoutes",
]
