"""Pages for datasets: the browser upload.

The upload page does its work in the browser (static/js/dataset-upload.js):
de-identification by the CLI's own Python code under Pyodide, encryption with
WebCrypto in the documented format, the manifest signed by the steward's
wallet, then the resumable upload API. The server only renders the form and
the member's training nodes, whose public keys the data key is wrapped to.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.datasets.selectors import uploader_member
from portal.nodes.selectors import node_list


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
        },
    )
