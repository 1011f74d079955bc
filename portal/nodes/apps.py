from __future__ import annotations

from portal.core import apps


class NodesConfig(apps.PortalApp):
    name = "portal.nodes"
    verbose_name = "Hospital nodes"
