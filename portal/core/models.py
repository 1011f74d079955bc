from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ContractDeployment(models.Model):
    """Where a contract lives on the chain this portal follows (set by `deploy_contracts`)."""

    name = models.CharField(max_length=64)
    chain_id = models.PositiveBigIntegerField()
    address = models.CharField(max_length=42)
    block_number = models.PositiveBigIntegerField()
    deployed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "chain_id"], name="one_deployment_per_chain")
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.address} (chain {self.chain_id})"


class ChainSyncState(models.Model):
    """One followed contract's event cursor: the last block of its logs mirrored into the
    database."""

    name = models.CharField(
        max_length=64, unique=True, help_text="the followed contract's deployment name"
    )
    last_block = models.BigIntegerField(null=True, blank=True)
    last_block_hash = models.CharField(max_length=66, blank=True)
    head_block = models.BigIntegerField(null=True, blank=True)
    events_processed = models.PositiveBigIntegerField(default=0)
    reorgs = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "chain sync status"
        verbose_name_plural = "chain sync status"

    def __str__(self) -> str:
        return f"{self.name}: block {self.last_block}"

    @property
    def lag(self) -> int | None:
        if self.head_block is None:
            return None
        return self.head_block - (self.last_block if self.last_block is not None else -1)


class ChainEventRecord(models.Model):
    """Every chain event mirrored once; the unique key makes handlers idempotent."""

    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=66)
    tx_hash = models.CharField(max_length=66)
    log_index = models.IntegerField()
    name = models.CharField(max_length=64)
    args = models.JSONField()
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tx_hash", "log_index"], name="event_once")]
        ordering = ["block_number", "log_index"]

    def __str__(self) -> str:
        return f"{self.name} #{self.block_number}:{self.log_index}"


class ApiToken(models.Model):
    """An API token: only the SHA-256 of its key is kept, so a copy of the database holds
    no usable token. The key is shown once, when issued; it stops working at `expires`."""

    class Kind(models.TextChoices):
        PERSON = "person", "person"
        NODE = "node", "hospital node"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.PERSON)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="the key's first characters, to tell it")
    created = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField()
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user}, until {self.expires:%Y-%m-%d})"

    @property
    def expired(self) -> bool:
        return self.expires <= timezone.now()
