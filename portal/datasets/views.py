"""Pages for datasets: the catalogue, a dataset's page with its owner's actions,
and the browser upload.

The catalogue and a dataset's entry are shown to the staff of every active
member; versions, grants and the access log only to the owner's admin and data
stewards (the selectors decide). Withdrawal and grant revocation are signed by
the owner's governance key in the browser's wallet (static/js/wallet.js fetches
the typed data from the `*_typed_data` views) or, in the embedded demo, by the
member's demo keystore; every refusal becomes a message on the page. Both are
declarations (``portal.core.signed_views``): who acts is the check this app registered for
the API too (``selectors.signer_checks``).

The upload page does its work in the browser (static/js/dataset-upload.js):
de-identification by the CLI's own Python code under Pyodide, encryption with
WebCrypto in the documented format, the manifest signed by the steward's
wallet, then the resumable upload API. The server only renders the form and
the member's training nodes, whose public keys the data key is wrapped to.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chain import uid_secret
from chain.actions import TypedData
from chain.deployment import DeploymentRecord, RecordError
from portal.consortium.models import Delegate, Member
from portal.core import demokeys
from portal.core.exceptions import NotFound, ServiceError
from portal.core.pagination import page_of
from portal.core.signed_views import SignedAction
from portal.core.web import (
    REFUSALS,
    has_demo_key,
    json_error,
    refusal_message,
)
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


def _posted_grant(request: HttpRequest, dataset: Dataset) -> Grant:
    """The grant the form names by node and version (no version: the node's newest)."""
    raw = request.POST.get("version", "").strip()
    if raw and not (raw.isdigit() and int(raw) >= 1):
        raise ServiceError("the version must be a positive whole number")
    return selectors.grant_named(
        viewer=request.user,
        dataset=dataset,
        node_id=request.POST.get("node_id", ""),
        version_number=int(raw) if raw else None,
    )


@login_required
def dataset_list_page(request: HttpRequest) -> HttpResponse:
    _viewer_member(request)
    # The API's catalogue rows: the shown columns and each dataset's newest shown version,
    # in one query, never a manifest (a version's chunk list, the large part of its row).
    page = page_of(request, selectors.catalogue_rows(viewer=request.user))
    rows = [(d, d["version"]) for d in selectors.catalogue_page(list(page))]
    return render(
        request,
        "datasets/list.html",
        {
            "section": "catalogue",
            "rows": rows,
            "page": page,
            "can_upload": uploader_member(request.user) is not None,
        },
    )


@login_required
def dataset_detail_page(request: HttpRequest, dataset_id: uuid.UUID) -> HttpResponse:
    _viewer_member(request)
    dataset = _visible(request, dataset_id)
    manager = selectors.owns(viewer=request.user, dataset=dataset)
    if request.method == "POST":
        try:
            chosen = _OWNER_ACTIONS.get(request.POST.get("action", ""))
            if chosen is None:
                raise ServiceError("choose an action: withdraw the dataset or revoke a grant")
            action = chosen.bound(request, dataset_id=dataset.pk)
            messages.success(request, action.message(action.relayed(dataset)))
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
            demo_available=has_demo_key(dataset.owner.governance_address),
        )
    return render(request, "datasets/detail.html", context)


def _check_typed_title(request: HttpRequest, dataset: Dataset) -> None:
    """The page's withdraw form carries the dataset's name as typed by the person, so that a
    stray click (or a browser without JavaScript, which gets no dialog) cannot withdraw it."""
    if request.POST.get("confirm_title", "").strip() != dataset.title:
        raise ServiceError(
            f"type the dataset's name, {dataset.title}, to confirm: withdrawal is final"
        )


class _OwnerAction(SignedAction):
    """A signed action of the dataset's owner, on a dataset the viewer sees (404 otherwise)."""

    def subject(self) -> Dataset:
        dataset_id = self.kwargs["dataset_id"]
        dataset = selectors.dataset_get(viewer=self.request.user, dataset_id=dataset_id)
        if dataset is None:
            raise NotFound(f"no dataset {dataset_id} in the catalogue")
        return dataset

    def message(self, result: Any) -> str:
        """The page's message once the action is relayed."""
        raise NotImplementedError


class Withdrawal(_OwnerAction):
    """The WithdrawDataset typed data the owner's governance key signs."""

    action = "WithdrawDataset"

    def typed(self, actor: Member, subject: Dataset) -> TypedData:
        return services.withdraw_typed_data(dataset=subject)

    def relay(self, actor: Member, subject: Dataset) -> Dataset:
        _check_typed_title(self.request, subject)
        return services.dataset_withdraw(dataset=subject, signature=self.signature())

    def message(self, result: Dataset) -> str:
        return f"{result.title} is withdrawn, on chain."


class GrantRevocation(_OwnerAction):
    """The RevokeGrant typed data for the grant (version and node) named in the form."""

    action = "RevokeGrant"

    def typed(self, actor: Member, subject: Dataset) -> TypedData:
        return services.grant_revoke_typed_data(grant=_posted_grant(self.request, subject))

    def relay(self, actor: Member, subject: Dataset) -> Grant:
        grant = _posted_grant(self.request, subject)
        return services.grant_revoke(grant=grant, signature=self.signature())

    def message(self, result: Grant) -> str:
        return (
            f"The grant of v{result.version.number} to node "
            f"{result.node.label or result.node.node_id[:10]} is revoked, on chain: the "
            "portal releases no more of this dataset's ciphertext to that node."
        )


#: What the dataset page's form may ask for, by its ``action`` field.
_OWNER_ACTIONS: dict[str, type[_OwnerAction]] = {
    "withdraw": Withdrawal,
    "revoke": GrantRevocation,
}


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
            "demo_available": has_demo_key(member.governance_address),
            "uid_typed": json.dumps(uid_secret.typed_data(member.governance_address)),
            "data_delegates": ",".join(
                member.delegates.filter(scope=Delegate.Scope.DATA, enabled=True).values_list(
                    "address", flat=True
                )
            ),
        },
    )


@require_POST
@login_required
def demo_uid_secret(request: HttpRequest) -> JsonResponse:
    """The member's UID secret derived from its demo governance keystore: in the embedded demo
    the portal holds that key anyway, so it may hand the derived secret to its own uploaders."""
    member = uploader_member(request.user)
    if member is None:
        return json_error("only the admin or a data steward of an active member may upload", 403)
    key = demokeys.load(member.governance_address)
    if key is None:
        return json_error(
            "this portal keeps no demo keystore for your hospital: choose the UID secret file "
            "your admin gave you, or derive it with the governance wallet",
            400,
        )
    return JsonResponse({"secret": "0x" + uid_secret.derive(key).hex()})


def _chain_record() -> DeploymentRecord | None:
    """The deployment record file (not the database's copy) the page checks node keys at."""
    try:
        return DeploymentRecord.load(Path(settings.CHAIN_DEPLOYMENT_RECORD))
    except RecordError:
        return None
