"""Training nodes: a hospital's own machines, registered on chain by the member."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from portal.consortium.models import Member


class Node(models.Model):
    """Mirror of a node registered on chain; its API identity is a service user with a token."""

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.CharField(max_length=66, unique=True, help_text="bytes32, 0x + 64 hex")
    label = models.CharField(max_length=100, blank=True)
    signer_address = models.CharField(max_length=42)
    data_public_key = models.CharField(max_length=66)
    active = models.BooleanField(default=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    last_check_in = models.DateTimeField(null=True, blank=True)
    registered_block = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["member__name", "label"]

    def __str__(self) -> str:
        return self.label or self.node_id[:10]

    @property
    def queue(self) -> str:
        return f"node.{self.node_id}"

    @property
    def is_online(self) -> bool:
        if self.last_check_in is None or not self.active:
            return False
        window = timedelta(seconds=2 * settings.NODE_CHECK_IN_SECONDS + 5)
        return timezone.now() - self.last_check_in <= window


def _challenge() -> str:
    return "0x" + secrets.token_hex(32)


def _challenge_expiry() -> datetime:
    return timezone.now() + timedelta(minutes=5)


class CheckInChallenge(models.Model):
    """A one-time random value the node signs with its registered key to check in."""

    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="challenges")
    value = models.CharField(max_length=66, unique=True, default=_challenge)
    expires_at = models.DateTimeField(default=_challenge_expiry)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.node}: {self.value[:10]}…"
