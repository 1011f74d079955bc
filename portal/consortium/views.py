"""Server-rendered pages for membership: apply, sponsor, propose removal or rotation, vote,
staff, two-factor login.

Views stay thin: they read through selectors, write through services, and turn
every refusal (a ServiceError, a contract revert, an unreachable chain) into a
message on the page. Chain actions are signed in the browser's wallet
(static/js/wallet.js fetches the typed data from the `*_typed_data` views) or,
in the embedded demo, by the member's demo keystore when the form says so.
"""

from __future__ import annotations

from base64 import b32encode
from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice
from eth_utils import to_checksum_address

from chain.errors import ChainUnavailable, ContractError
from portal.consortium import selectors, services
from portal.consortium.middleware import _needs_second_factor
from portal.consortium.models import Member, Proposal, Role, Staff
from portal.core import chain as portal_chain
from portal.core.apis import ServiceError
from portal.core.ratelimit import client_address
from portal.core.signin import SignInLocked, signin_check, signin_failed, signin_succeeded
from portal.core.tokens import api_token_list, api_token_revoke

P = ParamSpec("P")
View = Callable[Concatenate[HttpRequest, P], HttpResponse]

#: Every refusal a person can act on; shown as a message, never as a traceback.
REFUSALS = (ServiceError, ContractError, ChainUnavailable, portal_chain.NotDeployed)


def refusal_message(exc: Exception) -> str:
    if isinstance(exc, ServiceError):
        return exc.message
    if isinstance(exc, ContractError):
        return f"The chain refused this: {exc}"
    return f"The chain is unavailable, nothing was changed: {exc}"


def _jsonable(value: Any) -> Any:
    """Typed data as a wallet reads it: bytes as 0x-hex, integers beyond JS precision as text."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def typed_response(typed: dict[str, Any], signer: str) -> JsonResponse:
    return JsonResponse({"typed": _jsonable(typed), "signer": signer})


def json_error(message: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _acting_staff(request: HttpRequest) -> Staff | None:
    """The admin of an active hospital member: the one person who signs for it."""
    staff = selectors.staff_of(request.user)
    if staff is None or staff.role != Staff.Role.ADMIN or not staff.member.can_vote:
        return None
    return staff


def _rotating_staff(request: HttpRequest, member: Member) -> Staff | None:
    """The admin who may propose a new governance address for `member`: the admin of an
    active hospital member, or of `member` itself."""
    staff = selectors.staff_of(request.user)
    if staff is None or staff.role != Staff.Role.ADMIN:
        return None
    own = staff.member_id == member.pk and staff.member.is_active
    return staff if own or staff.member.can_vote else None


def has_demo_key(member: Member) -> bool:
    if not settings.DEMO_KEYSTORES:
        return False
    return (settings.DEMO_KEYSTORE_DIR / f"{member.governance_address.lower()}.json").exists()


def signature_or_demo(request: HttpRequest) -> str | None:
    """The wallet's signature from the form; None asks the service to use the demo keystore."""
    signature = request.POST.get("signature", "").strip()
    if signature:
        return signature
    if "demo" in request.POST:
        if not settings.DEMO_KEYSTORES:
            raise ServiceError("demo keystores are disabled on this portal: sign with your wallet")
        return None
    raise ServiceError(
        "no signature was sent: sign with your wallet (this needs JavaScript and a browser "
        "wallet such as MetaMask)"
    )


def member_required(view: View[P]) -> View[P]:
    """Signed in and staff of an active member; an applicant is sent to its status page."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        if not selectors.is_consortium_member(request.user):
            messages.info(
                request,
                "Only staff of consortium members can open that page. "
                "Your account's status is shown below.",
            )
            return redirect("dashboard")
        return view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --- Sign-in and second factor ------------------------------------------------------------


class PortalLoginView(LoginView):
    """Sign-in, refused in words while the account or the address is locked out.

    The password check itself counts failures (portal/core/signin.py's backend); an account
    that needs a second factor is forgiven its failures only once the code is verified.
    """

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        username = request.POST.get("username", "")
        locked = _lockout_message(request, username)
        if locked is None:
            return super().post(request, *args, **kwargs)
        form = self.get_form_class()(request, initial={"username": username})
        context = self.get_context_data(form=form, locked=locked)
        return self.render_to_response(context, status=429)

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if not _needs_second_factor(user):
            signin_succeeded(username=user.get_username())
        return super().form_valid(form)


def _lockout_message(request: HttpRequest, username: str) -> str | None:
    try:
        signin_check(username=username, address=client_address(request))
    except SignInLocked as exc:
        return exc.message[:1].upper() + exc.message[1:] + "."
    return None


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Six-digit code from your authenticator app",
        min_length=6,
        max_length=8,
        widget=forms.TextInput(
            attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "autofocus": True}
        ),
    )


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("dashboard")


@login_required
def two_factor(request: HttpRequest) -> HttpResponse:
    """Verify a TOTP code; the first visit creates an unconfirmed device and shows its QR code."""
    user = request.user
    next_url = _safe_next(request)
    if user.is_verified():  # type: ignore[union-attr]  # OTPMiddleware adds it
        return redirect(next_url)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    setting_up = device is None
    if device is None:
        device = TOTPDevice.objects.filter(
            user=user, confirmed=False
        ).first() or TOTPDevice.objects.create(user=user, confirmed=False, name="Authenticator app")
    form = TokenForm(request.POST or None)
    allowed, _ = device.verify_is_allowed()
    posted = request.method == "POST" and form.is_valid()
    # Codes count towards the same lockout as passwords: the password alone is not enough.
    locked = _lockout_message(request, user.get_username()) if posted else None
    if locked:
        messages.error(request, locked)
    elif posted and not allowed:
        messages.error(request, "Too many wrong codes: wait a minute, then type the newest code.")
    elif posted:
        if device.verify_token(form.cleaned_data["token"].strip()):
            if not device.confirmed:
                device.confirmed = True
                device.save(update_fields=["confirmed"])
            otp_login(request, device)
            signin_succeeded(username=user.get_username())
            messages.success(request, "Second factor verified.")
            return redirect(next_url)
        signin_failed(username=user.get_username(), address=client_address(request))
        messages.error(
            request, "That code is not valid. Check your device's clock and type the newest code."
        )
    context: dict[str, Any] = {"form": form, "next": next_url, "setting_up": setting_up}
    if setting_up:
        context["secret"] = b32encode(device.bin_key).decode()
        context["qr_svg"] = segno.make(device.config_url, error="m").svg_inline(
            scale=5,
            border=4,
            omitsize=True,
            light="#fff",
            title="QR code for your authenticator app",
        )
    return render(request, "consortium/two_factor.html", context, status=429 if locked else 200)


# --- API tokens ---------------------------------------------------------------------------


@login_required
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The signed-in person's API tokens (never their keys); any of them can be revoked."""
    tokens = api_token_list(viewer=request.user)
    if request.method == "POST":
        token = tokens.filter(pk=request.POST.get("revoke") or 0).first()
        if token is None:
            messages.error(request, "That token is not one of yours, or is already revoked.")
        else:
            api_token_revoke(token=token)
            messages.success(request, f"Token {token.prefix}… is revoked: it no longer works.")
        return redirect("api_tokens")
    return render(request, "consortium/api_tokens.html", {"section": "tokens", "tokens": tokens})


# --- Dashboard ----------------------------------------------------------------------------


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    staff = selectors.staff_of(request.user)
    member = staff.member if staff else None
    context: dict[str, Any] = {"section": "dashboard", "own_staff": staff, "own_member": member}
    if member is not None and member.is_active:
        open_proposals = selectors.proposal_list(viewer=request.user).filter(
            status=Proposal.Status.OPEN
        )
        context.update(
            open_proposals=open_proposals,
            awaiting_sponsor=selectors.applications_awaiting_sponsor(viewer=request.user),
            voted=set(member.votes.values_list("proposal_id", flat=True)),
            can_act=_acting_staff(request) is not None,
        )
    elif member is not None:
        context["own_proposals"] = selectors.proposal_list(viewer=request.user)
    return render(request, "consortium/dashboard.html", context)


# --- Applying -----------------------------------------------------------------------------


class ApplyForm(forms.Form):
    name = forms.CharField(label="Hospital name", max_length=200)
    contact_email = forms.EmailField(label="Contact email")
    role = forms.TypedChoiceField(
        label="Role in the consortium", choices=Role.choices, coerce=int, initial=Role.HOSPITAL
    )
    governance_address = forms.CharField(
        label="Governance address",
        max_length=42,
        help_text="The chain address of your wallet: it signs the application and, later, "
        "your votes.",
        widget=forms.TextInput(attrs={"placeholder": "0x…", "spellcheck": "false"}),
    )
    data_public_key = forms.CharField(
        label="Data public key",
        max_length=66,
        help_text="Your X25519 public key, 0x followed by 64 hex digits: datasets are "
        "encrypted to it.",
        widget=forms.TextInput(attrs={"placeholder": "0x…", "spellcheck": "false"}),
    )
    admin_username = forms.CharField(
        label="Your username", max_length=150, help_text="You become the hospital's admin."
    )
    admin_password = forms.CharField(
        label="Your password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    signature = forms.CharField(required=False, widget=forms.HiddenInput)

    def clean_admin_password(self) -> str:
        password: str = self.cleaned_data["admin_password"]
        validate_password(password)
        return password


def apply(request: HttpRequest) -> HttpResponse:
    if selectors.staff_of(request.user) is not None:
        messages.info(request, "Your account already belongs to a hospital; its status is below.")
        return redirect("dashboard")
    form = ApplyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if not data["signature"]:
                raise ServiceError(
                    "the application is not signed: press “Sign with wallet and apply” "
                    "(this needs JavaScript and a browser wallet such as MetaMask)"
                )
            member = services.application_submit(
                name=data["name"],
                contact_email=data["contact_email"],
                governance_address=data["governance_address"],
                data_public_key=data["data_public_key"],
                role=data["role"],
                signature=data["signature"],
                admin_username=data["admin_username"],
                admin_password=data["admin_password"],
            )
        except REFUSALS as exc:
            messages.error(request, refusal_message(exc))
        else:
            user = authenticate(
                request, username=data["admin_username"], password=data["admin_password"]
            )
            if user is not None:
                login(request, user)
            messages.success(
                request,
                f"{member.name}'s application is received. A member hospital must sponsor it, "
                "then the members vote.",
            )
            return redirect("dashboard")
    return render(request, "consortium/apply.html", {"form": form, "section": "apply"})


@require_POST
def apply_typed_data(request: HttpRequest) -> JsonResponse:
    """The EIP-712 application the applicant's wallet signs."""
    post = request.POST
    try:
        role = int(post.get("role") or Role.HOSPITAL)
        name = post.get("name", "").strip()
        if not name:
            raise ServiceError("fill in the hospital's name first: it is part of what you sign")
        typed = services.application_typed_data(
            governance_address=post.get("governance_address", "").strip(),
            role=role,
            data_public_key=post.get("data_public_key", "").strip(),
            name=name,
        )
    except ValueError:
        return json_error("the role must be a number")
    except REFUSALS as exc:
        return json_error(refusal_message(exc))
    return typed_response(typed, to_checksum_address(post["governance_address"].strip()))


# --- Members and sponsoring ---------------------------------------------------------------


@member_required
def members(request: HttpRequest) -> HttpResponse:
    rows = selectors.member_list(viewer=request.user)
    own = selectors.staff_of(request.user)
    pending = selectors.pending_changes(viewer=request.user)
    return render(
        request,
        "consortium/members.html",
        {
            "section": "members",
            "active_rows": [
                (m, pending.get(m.pk)) for m in rows.filter(status=Member.Status.ACTIVE)
            ],
            "applicants": rows.filter(status=Member.Status.APPLIED),
            "others": rows.exclude(status__in=[Member.Status.ACTIVE, Member.Status.APPLIED]),
            "can_act": _acting_staff(request) is not None,
            "own_admin_of": own.member_id if own and own.role == Staff.Role.ADMIN else None,
        },
    )


@member_required
def sponsor(request: HttpRequest, pk: int) -> HttpResponse:
    applicant = get_object_or_404(selectors.member_list(viewer=request.user), pk=pk)
    acting = _acting_staff(request)
    if request.method == "POST":
        try:
            if acting is None:
                raise ServiceError("only the admin of an active member hospital can sponsor")
            proposal = services.admission_sponsor(
                sponsor=acting.member, applicant=applicant, signature=signature_or_demo(request)
            )
        except REFUSALS as exc:
            messages.error(request, refusal_message(exc))
            return redirect("sponsor", pk=pk)
        messages.success(
            request,
            f"You sponsored {applicant.name}: proposal #{proposal.chain_proposal_id} is open "
            "for votes.",
        )
        return redirect("proposal", number=proposal.chain_proposal_id)
    return render(
        request,
        "consortium/sponsor.html",
        {
            "section": "members",
            "applicant": applicant,
            "acting": acting,
            "demo_available": acting is not None and has_demo_key(acting.member),
        },
    )


@require_POST
@member_required
def sponsor_typed_data(request: HttpRequest, pk: int) -> JsonResponse:
    applicant = get_object_or_404(selectors.member_list(viewer=request.user), pk=pk)
    acting = _acting_staff(request)
    if acting is None:
        return json_error("only the admin of an active member hospital can sponsor", 403)
    if applicant.status != Member.Status.APPLIED:
        return json_error(
            f"{applicant.name} cannot be sponsored now ({applicant.get_status_display()})"
        )
    try:
        typed = services.sponsor_typed_data(sponsor=acting.member, applicant=applicant)
    except REFUSALS as exc:
        return json_error(refusal_message(exc))
    return typed_response(typed, acting.member.governance_address)


# --- Proposing removal and rotation -------------------------------------------------------


def _change_context(request: HttpRequest, member: Member, acting: Staff | None) -> dict[str, Any]:
    return {
        "section": "members",
        "member": member,
        "acting": acting,
        "pending": selectors.pending_change(member=member),
        "demo_available": acting is not None and has_demo_key(acting.member),
        # Proposing one's own removal is allowed, and asked about twice.
        "own_hospital": acting is not None and acting.member_id == member.pk,
    }


@member_required
def removal(request: HttpRequest, pk: int) -> HttpResponse:
    member = get_object_or_404(selectors.member_list(viewer=request.user), pk=pk)
    acting = _acting_staff(request)
    if request.method == "POST":
        try:
            if acting is None:
                raise ServiceError(
                    "only the admin of an active member hospital can propose a removal"
                )
            proposal = services.removal_propose(
                proposer=acting.member, member=member, signature=signature_or_demo(request)
            )
        except REFUSALS as exc:
            messages.error(request, refusal_message(exc))
            return redirect("removal", pk=pk)
        messages.success(
            request,
            f"You proposed removing {member.name}: proposal #{proposal.chain_proposal_id} is "
            "open for votes.",
        )
        return redirect("proposal", number=proposal.chain_proposal_id)
    return render(request, "consortium/removal.html", _change_context(request, member, acting))


@require_POST
@member_required
def removal_typed_data(request: HttpRequest, pk: int) -> JsonResponse:
    member = get_object_or_404(selectors.member_list(viewer=request.user), pk=pk)
    acting = _acting_staff(request)
    if acting is None:
        return json_error("only the admin of an active member hospital can propose a removal", 403)
    try:
        typed = services.removal_typed_data(proposer=acting.member, member=member)
    except REFUSALS as exc:
        return json_error(refusal_message(exc))
    return typed_response(typed, acting.member.governance_address)


_ROTATION_REFUSED = (
    "only the admin of an active member hospital, or of the member itself, can propose a new "
    "governance address"
)


@member_required
def rotation(request: HttpRequest, pk: int) -> HttpResponse:
    member = get_object_or_404(selectors.member_list(viewer=request.user), pk=pk)
    acting = _rotating_staff(request, member)
    new_governance = request.POST.get("new_governance", "").strip()
    if request.method == "POST":
        try:
            if acting is None:
                raise ServiceError(_ROTATION_REFUSED)
            proposal = services.rotation_propose(
                proposer=acting.member,
                member=member,
                new_governance=new_governance,
                signature=signature_or_demo(request),
            )
        except REFUSALS as exc:
            # Shown on the page again, with the address kept, rather than redirected.
            messages.error(request, refusal_message(exc))
        else:
            messages.success(
                request,
                f"You proposed moving {member.name}'s governance to "
                f"{proposal.new_governance_address}: proposal #{proposal.chain_proposal_id} is "
                "open for votes.",
            )
            return redirect("proposal", number=proposal.chain_proposal_id)
    context = _change_context(request, member, acting)
    context["new_governance"] = new_governance
    return render(request, "consortium/rotation.html", context)


@require_POST
@member_required
def rotation_typed_data(request: HttpRequest, pk: int) -> JsonResponse:
    member = get_object_or_404(selectors.member_list(viewer=request.user), pk=pk)
    acting = _rotating_staff(request, member)
    if acting is None:
        return json_error(_ROTATION_REFUSED, 403)
    try:
        typed = services.rotation_typed_data(
            proposer=acting.member,
            member=member,
            new_governance=request.POST.get("new_governance", "").strip(),
        )
    except REFUSALS as exc:
        return json_error(refusal_message(exc))
    return typed_response(typed, acting.member.governance_address)


# --- Proposals and votes ------------------------------------------------------------------


@member_required
def proposals(request: HttpRequest) -> HttpResponse:
    rows = selectors.proposal_list(viewer=request.user)
    return render(
        request,
        "consortium/proposals.html",
        {
            "section": "proposals",
            "open_proposals": rows.filter(status=Proposal.Status.OPEN),
            "decided_proposals": rows.exclude(status=Proposal.Status.OPEN),
        },
    )


@member_required
def proposal(request: HttpRequest, number: int) -> HttpResponse:
    item = get_object_or_404(selectors.proposal_list(viewer=request.user), chain_proposal_id=number)
    acting = _acting_staff(request)
    if request.method == "POST":
        try:
            if request.POST.get("action") == "finalize":
                if acting is None:
                    raise ServiceError("only the admin of an active hospital member can finalize")
                services.proposal_finalize(proposal=item, by=acting.member)
                messages.success(request, f"Proposal #{number} is closed.")
            else:
                if acting is None:
                    raise ServiceError("only the admin of an active hospital member can vote")
                support = _support(request)
                item = services.vote_cast(
                    voter=acting.member,
                    proposal=item,
                    support=support,
                    signature=signature_or_demo(request),
                )
                outcome = ""
                if item.status != Proposal.Status.OPEN:
                    outcome = f" It is {item.get_status_display().lower()}."
                messages.success(
                    request,
                    f"Your {'yes' if support else 'no'} vote on #{number} is recorded.{outcome}",
                )
        except REFUSALS as exc:
            messages.error(request, refusal_message(exc))
        return redirect("proposal", number=number)
    own_vote = item.votes.filter(voter=acting.member).first() if acting else None
    return render(
        request,
        "consortium/proposal.html",
        {
            "section": "proposals",
            "proposal": item,
            "votes": item.votes.select_related("voter").order_by("block_number"),
            "own_vote": own_vote,
            "can_vote": acting is not None and item.is_open and own_vote is None,
            "can_finalize": item.status == Proposal.Status.OPEN and not item.is_open,
            "demo_available": acting is not None and has_demo_key(acting.member),
            "yes_percent": round(100 * item.yes / item.eligible) if item.eligible else 0,
            "no_percent": round(100 * item.no / item.eligible) if item.eligible else 0,
        },
    )


def _support(request: HttpRequest) -> bool:
    value = request.POST.get("support", "")
    if value not in ("yes", "no"):
        raise ServiceError("choose yes or no")
    return value == "yes"


@require_POST
@member_required
def vote_typed_data(request: HttpRequest, number: int) -> JsonResponse:
    item = get_object_or_404(selectors.proposal_list(viewer=request.user), chain_proposal_id=number)
    acting = _acting_staff(request)
    if acting is None:
        return json_error("only the admin of an active hospital member can vote", 403)
    try:
        typed = services.vote_typed_data(
            voter=acting.member, proposal=item, support=_support(request)
        )
    except REFUSALS as exc:
        return json_error(refusal_message(exc))
    return typed_response(typed, acting.member.governance_address)


# --- Staff and invitations ----------------------------------------------------------------


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email")
    role = forms.ChoiceField(label="Role", choices=Staff.Role.choices, initial=Staff.Role.CLINICIAN)


@member_required
def staff(request: HttpRequest) -> HttpResponse:
    own = selectors.staff_of(request.user)
    assert own is not None  # member_required
    form = InviteForm()
    if request.method == "POST":
        try:
            if request.POST.get("action") == "remove":
                target = get_object_or_404(
                    selectors.staff_list(viewer=request.user), pk=request.POST.get("staff")
                )
                services.staff_remove(admin=own, staff=target)
                messages.success(request, f"{target.user.get_username()} is removed.")
                return redirect("staff")
            form = InviteForm(request.POST)
            if form.is_valid():
                invitation = services.staff_invite(
                    admin=own, email=form.cleaned_data["email"], role=form.cleaned_data["role"]
                )
                link = request.build_absolute_uri(
                    reverse("invitation_accept", args=[invitation.token])
                )
                messages.success(
                    request,
                    f"Invitation for {invitation.email} created. Send them this link: {link}",
                )
                return redirect("staff")
        except REFUSALS as exc:
            messages.error(request, refusal_message(exc))
    invitations = selectors.invitation_list(viewer=request.user)
    return render(
        request,
        "consortium/staff.html",
        {
            "section": "staff",
            "own": own,
            "is_admin": own.role == Staff.Role.ADMIN,
            "staff_rows": selectors.staff_list(viewer=request.user).order_by("user__username"),
            "invitations": [
                (i, request.build_absolute_uri(reverse("invitation_accept", args=[i.token])))
                for i in invitations.order_by("-created_at")
                if i.is_open
            ],
            "form": form,
        },
    )


class AcceptForm(forms.Form):
    username = forms.CharField(label="Choose a username", max_length=150)
    password = forms.CharField(
        label="Choose a password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_password(self) -> str:
        password: str = self.cleaned_data["password"]
        validate_password(password)
        return password


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    from portal.consortium.models import Invitation

    invitation = Invitation.objects.select_related("member").filter(token=token).first()
    if invitation is None or not invitation.is_open:
        messages.error(request, "This invitation is unknown, used or expired: ask for a new one.")
        return render(
            request, "consortium/invitation_accept.html", {"invitation": None}, status=404
        )
    if request.user.is_authenticated:
        messages.info(request, "Sign out first to accept an invitation for a new account.")
        return redirect("dashboard")
    form = AcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.invitation_accept(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password"],
            )
        except REFUSALS as exc:
            messages.error(request, refusal_message(exc))
        else:
            login(request, created.user, backend=settings.AUTHENTICATION_BACKENDS[0])
            messages.success(request, f"Welcome to {created.member.name}.")
            return redirect("dashboard")
    return render(
        request, "consortium/invitation_accept.html", {"invitation": invitation, "form": form}
    )
