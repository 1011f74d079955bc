"""Pages for datasets: the catalogue, a dataset's page with its owner's actions,
and the browser upload.

The catalogue and a dataset's entry are shown to the staff of every active
member; versions, grants and the access log only to the owner's admin and data
stewards (the selectors decide). Withdrawal and grant revocation are signed by
the owner's governance key in the browser's wallet (static/js/wallet.js fetches
the typed data from the `*_typed_data` views) or, in the embedded demo, by the
member's demo keystore; every refusal becomes a message on the page.

The upload page does its work in the browser (static/js/dataset-upload.js):
de-identification by the CLI's own Python code under Pyodide, encryption with
WebCrypto in the documented format, the manifest signed by the steward's
wallet, then the resumable upload API. The server only renders the form and
the member's training nodes, whose public keys the data key is wrapped to.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chain.deployment import DeploymentRecord, RecordError
from portal.consortium.models import Member
from portal.consortium.views import (
    REFUSALS,
    has_demo_key,
    json_error,
    refusal_message,
    signature_or_demo,
    typed_response,
)
from portal.core.apis import ServiceError
from portal.core.signing import parse_bytes32
from portal.datasets import selectors, services
from portal.datasets.models import Dataset, DatasetVersion, Grant
from portal.datasets.selectors import uploader_member
from portal.nodes.selectors import node_list

#: The access log shows the newest entries only; the API serves more.
ACCESS_LOG_LIMIT = 200

NOT_MEMBER = "Only staff of an active consortium member can see the dataset catalogue."


def _viewer_member(request: HttpRequest) -> Member:
    member = selectors.viewer_member(request.user)
    if member is None:
        raise PermissionDenied(NOT_MEMBER)
    return member


def _visible(request: HttpRequest, dataset_id: uuid.UUID) -> Dataset:
    dataset = selectors.dataset_get(viewer=request.user, dataset_id=dataset_id)
    if dataset is None:
        raise Http404(f"no dataset {dataset_id} in the catalogue")
    return dataset


def _is_manager(request: HttpRequest, dataset: Dataset) -> bool:
    """The owner's admin or a data steward: the one who sees content and acts."""
    return selectors.owned_dataset_list(viewer=request.user).filter(pk=dataset.pk).exists()


def _posted_grant(request: HttpRequest, dataset: Dataset) -> Grant:
    """The grant the form names by node and version (no version: the node's newest)."""
    node_id = parse_bytes32(request.POST.get("node_id", ""), "node id")
    raw = request.POST.get("version", "").strip()
    if raw and not (raw.isdigit() and int(raw) >= 1):
        raise ServiceError("the version must be a positive whole number")
    number = int(raw) if raw else None
    grant = selectors.grant_get(
        viewer=request.user, dataset=dataset, node_id=node_id, version_number=number
    )
    if grant is None:
        which = f"v{number} of " if number else ""
        raise ServiceError(f"node {node_id} holds no grant on {which}{dataset.title}")
    return grant


def _shown_versions() -> Prefetch:
    return Prefetch(
        "versions",
        queryset=DatasetVersion.objects.exclude(state=DatasetVersion.State.UPLOADING).order_by(
            "-number"
        ),
        to_attr="shown_versions",
    )


@login_required
def dataset_list_page(request: HttpRequest) -> HttpResponse:
    _viewer_member(request)
    datasets = selectors.dataset_list(viewer=request.user).prefetch_related(_shown_versions())
    rows = [(d, d.shown_versions[0] if d.shown_versions else None) for d in datasets]  # type: ignore[attr-defined]
    return render(
        request,
        "datasets/list.html",
        {
            "section": "catalogue",
            "rows": rows,
            "can_upload": uploader_member(request.user) is not None,
        },
    )


@login_required
def dataset_detail_page(request: HttpRequest, dataset_id: uuid.UUID) -> HttpResponse:
    _viewer_member(request)
    dataset = _visible(request, dataset_id)
    manager = _is_manager(request, dataset)
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if not manager:
                raise ServiceError(
                    f"only {dataset.owner.name}'s admin or data stewards may change this dataset"
                )
            if action == "withdraw":
                _check_typed_title(request, dataset)
                dataset = services.dataset_withdraw(
                    dataset=dataset, signature=signature_or_demo(request)
                )
                messages.success(request, f"{dataset.title} is withdrawn, on chain.")
            elif action == "revoke":
                grant = _posted_grant(request, dataset)
                grant = services.grant_revoke(grant=grant, signature=signature_or_demo(request))
                messages.success(
                    request,
                    f"The grant of v{grant.version.number} to node "
                    f"{grant.node.label or grant.node.node_id[:10]} is revoked, on chain: the "
                    "portal releases no more of this dataset's ciphertext to that node.",
                )
            else:
                raise ServiceError("choose an action: withdraw the dataset or revoke a grant")
        except REFUSALS as exc:
            messages.error(request, refusal_message(exc))
        return redirect("dataset-detail", dataset_id=dataset.pk)
    latest = (
        dataset.versions.exclude(state=DatasetVersion.State.UPLOADING).order_by("-number").first()
    )
    context = {
        "section": "catalogue",
        "dataset": dataset,
        "latest": latest,
        "manager": manager,
        "withdrawn": dataset.status == Dataset.Status.WITHDRAWN,
    }
    if manager:
        log = selectors.access_log_list(viewer=request.user, dataset=dataset)
        context.update(
            versions=selectors.version_list(viewer=request.user, dataset=dataset),
            grants=selectors.grant_list(viewer=request.user, dataset=dataset),
            access_log=log[:ACCESS_LOG_LIMIT],
            access_log_total=log.count(),
            access_log_limit=ACCESS_LOG_LIMIT,
            demo_available=has_demo_key(dataset.owner),
        )
    return render(request, "datasets/detail.html", context)


def _check_typed_title(request: HttpRequest, dataset: Dataset) -> None:
    """The page's withdraw form carries the dataset's name as typed by the person, so that a
    stray click (or a browser without JavaScript, which gets no dialog) cannot withdraw it."""
    if request.POST.get("confirm_title", "").strip() != dataset.title:
        raise ServiceError(
            f"type the dataset's name, {dataset.title}, to confirm: withdrawal is final"
        )


def _managed_or_error(request: HttpRequest, dataset_id: uuid.UUID) -> Dataset | JsonResponse:
    dataset = selectors.dataset_get(viewer=request.user, dataset_id=dataset_id)
    if dataset is None:
        return json_error(f"no dataset {dataset_id} in the catalogue", 404)
    if not _is_manager(request, dataset):
        return json_error(
            f"only {dataset.owner.name}'s admin or data stewards may change this dataset", 403
        )
    return dataset


@require_POST
@login_required
def withdraw_typed_data(request: HttpRequest, dataset_id: uuid.UUID) -> JsonResponse:
    """The WithdrawDataset typed data the owner's governance key signs."""
    dataset = _managed_or_error(request, dataset_id)
    if isinstance(dataset, JsonResponse):
        return dataset
    try:
        if dataset.status == Dataset.Status.WITHDRAWN:
            raise ServiceError(f"{dataset.title} is already withdrawn")
        typed = services.withdraw_typed_data(dataset=dataset)
    except REFUSALS as exc:
        return json_error(refusal_message(exc))
    return typed_response(typed, dataset.owner.governance_address)


@require_POST
@login_required
def revoke_typed_data(request: HttpRequest, dataset_id: uuid.UUID) -> JsonResponse:
    """The RevokeGrant typed data for the grant (version and node) named in the form."""
    dataset = _managed_or_error(request, dataset_id)
    if isinstance(dataset, JsonResponse):
        return dataset
    try:
        typed = services.grant_revoke_typed_data(grant=_posted_grant(request, dataset))
    except REFUSALS as exc:
        return json_error(refusal_message(exc))
    return typed_response(typed, dataset.owner.governance_address)


@login_required
def dataset_upload_page(request: HttpRequest) -> HttpResponse:
    member = uploader_member(request.user)
    if member is None:
        raise PermissionDenied(
            "Only the admin or a data steward of an active consortium member can upload datasets."
        )
    nodes = [
        {"node_id": n.node_id, "label": n.label or n.node_id[:10], "public_key": n.data_public_key}
        for n in node_list(viewer=request.user).filter(active=True)
    ]
    return render(
        request,
        "datasets/upload.html",
        {
            "section": "datasets",
            "uploader": member,
            "nodes": nodes,
            "chain_record": _chain_record(),
            "chain_public_rpc_url": settings.CHAIN_PUBLIC_RPC_URL,
        },
    )


def _chain_record() -> DeploymentRecord | None:
    """The deployment record file (not the database's copy) the page checks node keys at."""
    try:
        return DeploymentRecord.load(Path(settings.CHAIN_DEPLOYMENT_RECORD))
    except RecordError:
        return None
