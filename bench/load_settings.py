"""The portal's settings with the load bench's URLconf: the bare baseline view exists only
in this settings module's process, never under portal.urls."""

from __future__ import annotations

from portal.settings import *  # noqa: F403

ROOT_URLCONF = "load_urls"
