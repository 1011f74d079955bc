from __future__ import annotations

from portal.core import apps


class ConsortiumConfig(apps.PortalApp):
    name = "portal.consortium"
    verbose_name = "Consortium"
