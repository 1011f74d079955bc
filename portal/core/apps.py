from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig


class CoreConfig(AppConfig):
    default = True  # beside PortalApp, the one Django takes for this app
    name = "portal.core"
    label = "core"
    verbose_name = "Chain sync and platform"


class PortalApp(AppConfig):
    """An app of the portal. Once ready, its chain mirrors (``handlers.MIRRORS``) join the
    one chain sync and its checks of who may take its signed actions
    (``selectors.signer_checks``) join the one relay: core names no app, so imports none."""

    def ready(self) -> None:
        from portal.core import relay, sync

        sync.register(import_module(f"{self.name}.handlers").MIRRORS)
        relay.register_checks(import_module(f"{self.name}.selectors").signer_checks())
