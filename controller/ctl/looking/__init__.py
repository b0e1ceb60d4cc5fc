"""Looking at what the controller serves: ``status``, the text views, why it cannot be read.

``rolloutctl status`` runs from here alone: the HTTP client and the view models, none of
the signing, broker or report work of the other wings, so it answers soon.
"""

from controller.ctl.looking import diagnosis, status, views
from controller.ctl.looking.shares import share

__all__ = [
    "diagnosis",
    "share",
    "status",
    "views",
]
