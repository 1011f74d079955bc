"""What a training node receives: the manifest and ciphertext of a version it holds a grant
on, each release and refusal written to the owner's access log, and the node's own report."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.utils import timezone

from portal.core.exceptions import Forbidden, ServiceError, Throttled
from portal.datasets.models import AccessLog, Dataset, DatasetVersion, Grant
from portal.datasets.services.chain import dataset_registry
from portal.nodes.models import Node


class Refused(Forbidden):
    """Access the asker may not have; recorded in the access log."""


class TooManyReports(Throttled):
    """A node reports faster than ``DATASET_NODE_REPORTS_PER_HOUR`` allows."""


def access_log(
    *,
    dataset: Dataset,
    action: str,
    what: str,
    node: Node | None = None,
    user: AbstractBaseUser | None = None,
    version: DatasetVersion | None = None,
    chunk: int | None = None,
    detail: str = "",
) -> AccessLog:
    return AccessLog.objects.create(
        dataset=dataset,
        version=version,
        chunk=chunk,
        node=node,
        user=user,  # type: ignore[misc]
        action=action,
        what=what,
        detail=detail[:2000],
    )


def _refuse(
    dataset: Dataset, node: Node, what: str, reason: str, version: DatasetVersion | None = None
) -> Refused:
    access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=version,
        action=AccessLog.Action.REFUSE,
        what=what,
        detail=reason,
    )
    return Refused(reason, code="refused")


def node_grant(
    *, node: Node, dataset: Dataset, version_number: int | None, what: str, chunk: int | None = None
) -> Grant:
    """The node's active grant on the version, or Refused (logged) saying why not."""
    if dataset.status != Dataset.Status.ACTIVE:
        raise _refuse(dataset, node, what, f"{dataset.title} is {dataset.get_status_display()}")
    # The chain freezes a removed member's datasets and grants as they were: the portal
    # itself stops releasing them, and stops releasing anything to a removed member's nodes.
    for member, whose in ((dataset.owner, "its owner"), (node.member, "the node's member")):
        if not member.is_active:
            reason = (
                f"{whose}, {member.name}, is {member.get_status_display().lower()} in the "
                "consortium: nothing is released"
            )
            raise _refuse(dataset, node, what, reason)
    grants = Grant.objects.select_related("version").filter(
        version__dataset=dataset,
        node=node,
        state=Grant.State.ACTIVE,
        version__state=DatasetVersion.State.ANCHORED,
    )
    if version_number is not None:
        grants = grants.filter(version__number=version_number)
    grant = grants.order_by("-version__number").first()
    if grant is None:
        which = f"version {version_number} of " if version_number else ""
        raise _refuse(
            dataset,
            node,
            what,
            f"node {node.node_id} holds no active grant on {which}{dataset.title}: "
            "ask its owner for a grant",
        )
    if chunk is not None and not 0 <= chunk < grant.version.chunk_count:
        raise _refuse(
            dataset, node, what, f"chunk {chunk} is not in the manifest", version=grant.version
        )
    return grant


def node_release_manifest(*, node: Node, dataset: Dataset, version_number: int | None) -> Grant:
    grant = node_grant(node=node, dataset=dataset, version_number=version_number, what="manifest")
    on_chain = dataset_registry().grant_of(dataset.chain_id, node.node_id)
    if not on_chain.active or "0x" + on_chain.grant_hash.hex() != grant.grant_hash:
        raise _refuse(
            dataset, node, "manifest", "the chain does not hold this grant", grant.version
        )
    access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=grant.version,
        action=AccessLog.Action.RELEASE,
        what="manifest",
        detail="manifest and wrapped key",
    )
    return grant


def _chain_grant_hash(dataset: Dataset, node: Node) -> str | None:
    """The grant hash in force on chain for the node, or None; cached for
    DATASET_GRANT_CHECK_SECONDS so a fetch of many chunks reads the chain once."""
    key = f"datasets:chain-grant:{dataset.pk}:{node.node_id}"
    cached = cache.get(key)
    if cached is None:
        on_chain = dataset_registry().grant_of(dataset.chain_id, node.node_id)
        cached = "0x" + on_chain.grant_hash.hex() if on_chain.active else ""
        cache.set(key, cached, timeout=int(settings.DATASET_GRANT_CHECK_SECONDS))
    return cached or None


def node_release_chunk(
    *, node: Node, dataset: Dataset, version_number: int, index: int
) -> tuple[DatasetVersion, str]:
    """The storage path of a ciphertext chunk the node may fetch; the release is logged.

    The chain's grant is checked too, not only the mirror's (a revocation the portal has not
    mirrored yet stops releases within DATASET_GRANT_CHECK_SECONDS).
    """
    grant = node_grant(
        node=node, dataset=dataset, version_number=version_number, what="chunk", chunk=index
    )
    if _chain_grant_hash(dataset, node) != grant.grant_hash:
        raise _refuse(dataset, node, "chunk", "the chain does not hold this grant", grant.version)
    access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=grant.version,
        chunk=index,
        action=AccessLog.Action.RELEASE,
        what="chunk",
    )
    return grant.version, grant.version.chunk_path(index)


def _reports_rate_check(node: Node) -> None:
    """A node's reports are its own word: at most DATASET_NODE_REPORTS_PER_HOUR of them, so a
    node cannot flood the owner's access log."""
    limit = int(settings.DATASET_NODE_REPORTS_PER_HOUR)
    since = timezone.now() - timedelta(hours=1)
    recent = AccessLog.objects.filter(node=node, what="dataset", at__gte=since).count()
    if recent >= limit:
        raise TooManyReports(
            f"node {node.node_id} sent {recent} reports in the last hour, the most allowed "
            f"(DATASET_NODE_REPORTS_PER_HOUR={limit}); report again later",
            code="throttled",
        )


def node_report(
    *, node: Node, dataset: Dataset, version_number: int, ok: bool, reason: str
) -> AccessLog:
    """What the node did with a version: decrypted it, or refused it with the reason."""
    version = dataset.versions.filter(number=version_number).first()
    if version is None:
        raise ServiceError(f"{dataset.title} has no version {version_number}")
    if not Grant.objects.filter(version=version, node=node).exists():
        raise Refused(f"node {node.node_id} was never granted version {version_number}")
    _reports_rate_check(node)
    return access_log(
        dataset=dataset,
        node=node,
        user=node.user,
        version=version,
        action=AccessLog.Action.DECRYPT if ok else AccessLog.Action.REFUSE,
        what="dataset",
        detail=reason or ("decrypted and verified" if ok else "refused by the node"),
    )
