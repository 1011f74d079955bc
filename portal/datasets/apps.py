from __future__ import annotations

from portal.core import apps


class DatasetsConfig(apps.PortalApp):
    name = "portal.datasets"
    verbose_name = "Encrypted datasets"
