from __future__ import annotations

from django.db import models


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
    """The event cursor's position: the last block mirrored into the database."""

    name = models.CharField(max_length=64, unique=True, default="registry")
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
