"""Server-rendered pages for membership: the dashboard, applying, sponsoring, proposing
removal or rotation, proposals and votes. Sign-in, staff and tokens are in account_views.py.

Views stay thin: they read through selectors, write through services, and turn every
refusal (a ServiceError, a contract revert, an unreachable chain) into a message on the
page. Each signed action is a declaration (``portal.core.signed_views``): who acts is the
check this app registered for the API too (``selectors.signer_checks``), and its
typed-data route, which static/js/wallet.js calls, follows from it. The member's wallet
signs, or, in the embedded demo, its demo keystore when the form says so.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django import forms
from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.password_validation import validate_password
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from chain.actions import TypedData
from portal.consortium import selectors, services
from portal.consortium.models import Member, Proposal, Role, Staff
from portal.consortium.selectors import Action
from portal.core.exceptions import ServiceError
from portal.core.pagination import page_of
from portal.core.signed_views import SignedAction, SignedActionPage
from portal.core.web import REFUSALS, has_demo_key, refusal_message

P = ParamSpec("P")
View = Callable[Concatenate[HttpRequest, P], HttpResponse]


def _allowed(request: HttpRequest, action: Action) -> bool:
    """Whether ``selectors.may_act`` lets the viewer take ``action`` (a page's buttons)."""
    return selectors.may_act(viewer=request.user, action=action).allowed


def _demo_available(acting: Staff | None) -> bool:
    return acting is not None and has_demo_key(acting.member.governance_address)


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


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    """The governance half of the signed-in dashboard (portal/datasets/home.py adds the data
    and node halves, which this app may not import): the member's status, open proposals
    and applications, for whoever may vote on them."""
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
            can_act=_allowed(request, Action.VOTE),
        )
    elif member is not None:
        context["own_proposals"] = selectors.proposal_list(viewer=request.user)
    return context


def _hex_input(label: str, max_length: int, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=max_length,
        help_text=help_text,
        widget=forms.TextInput(attrs={"placeholder": "0x…", "spellcheck": "false"}),
    )


class ApplyForm(forms.Form):
    name = forms.CharField(label="Hospital name", max_length=200)
    contact_email = forms.EmailField(label="Contact email")
    role = forms.TypedChoiceField(
        label="Role in the consortium", choices=Role.choices, coerce=int, initial=Role.HOSPITAL
    )
    governance_address = _hex_input(
        "Governance address",
        42,
        "The chain address of your wallet: it signs the application and, later, your votes.",
    )
    data_public_key = _hex_input(
        "Data public key",
        66,
        "Your X25519 public key, 0x followed by 64 hex digits: datasets are encrypted to it.",
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


def _anyone(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    return view


class ApplicationTypedData(SignedAction):
    """The EIP-712 application the applicant's wallet signs."""

    action = "Application"
    guard = _anyone

    def typed(self, actor: None, subject: None) -> TypedData:
        post = self.request.POST
        try:
            role = int(post.get("role") or Role.HOSPITAL)
        except ValueError:
            raise ServiceError("the role must be a number") from None
        name = post.get("name", "").strip()
        if not name:
            raise ServiceError("fill in the hospital's name first: it is part of what you sign")
        return services.application_typed_data(
            governance_address=post.get("governance_address", "").strip(),
            role=role,
            data_public_key=post.get("data_public_key", "").strip(),
            name=name,
        )

    def signer(self, actor: None, subject: None, typed: TypedData) -> str:
        return str(typed["message"]["applicant"])


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
            "can_act": _allowed(request, Action.SPONSOR),
            "own_admin_of": own.member_id if own and own.role == Staff.Role.ADMIN else None,
        },
    )


class _ConsortiumPage(SignedActionPage):
    """A page of a signed action a member's admin takes for it."""

    guard = member_required

    def acting_staff(self, subject: Any) -> Staff | None:
        """The viewer's staff row where the action's check lets it act, for the template."""
        return selectors.staff_of(self.request.user) if self.may_act(subject) else None


class _MemberActionPage(_ConsortiumPage):
    """An action on a member the viewer sees (404 otherwise) that opens a proposal."""

    def subject(self) -> Member:
        return get_object_or_404(
            selectors.member_list(viewer=self.request.user), pk=self.kwargs["pk"]
        )

    def done(self, subject: Member, proposal: Proposal) -> HttpResponse:
        messages.success(self.request, self.opened(subject, proposal))
        return redirect("proposal", number=proposal.chain_proposal_id)

    def opened(self, subject: Member, proposal: Proposal) -> str:
        raise NotImplementedError

    def context(self, member: Member) -> dict[str, Any]:
        acting = self.acting_staff(member)
        return {
            "section": "members",
            "member": member,
            "acting": acting,
            "pending": selectors.pending_change(member=member),
            "demo_available": _demo_available(acting),
            # Proposing one's own removal is allowed, and asked about twice.
            "own_hospital": acting is not None and acting.member_id == member.pk,
        }


class SponsorPage(_MemberActionPage):
    action = "SponsorAdmission"
    template_name = "consortium/sponsor.html"

    def typed(self, actor: Member, subject: Member) -> TypedData:
        return services.sponsor_typed_data(sponsor=actor, applicant=subject)

    def relay(self, actor: Member, subject: Member) -> Proposal:
        return services.admission_sponsor(
            sponsor=actor, applicant=subject, signature=self.signature()
        )

    def opened(self, subject: Member, proposal: Proposal) -> str:
        return (
            f"You sponsored {subject.name}: proposal #{proposal.chain_proposal_id} is open "
            "for votes."
        )

    def context(self, applicant: Member) -> dict[str, Any]:
        acting = self.acting_staff(applicant)
        return {
            "section": "members",
            "applicant": applicant,
            "acting": acting,
            "demo_available": _demo_available(acting),
        }


class RemovalPage(_MemberActionPage):
    action = "ProposeRemoval"
    template_name = "consortium/removal.html"

    def typed(self, actor: Member, subject: Member) -> TypedData:
        return services.removal_typed_data(proposer=actor, member=subject)

    def relay(self, actor: Member, subject: Member) -> Proposal:
        return services.removal_propose(proposer=actor, member=subject, signature=self.signature())

    def opened(self, subject: Member, proposal: Proposal) -> str:
        return (
            f"You proposed removing {subject.name}: proposal #{proposal.chain_proposal_id} is "
            "open for votes."
        )


class RotationPage(_MemberActionPage):
    action = "ProposeRotation"
    template_name = "consortium/rotation.html"

    def new_governance(self) -> str:
        return self.request.POST.get("new_governance", "").strip()

    def typed(self, actor: Member, subject: Member) -> TypedData:
        return services.rotation_typed_data(
            proposer=actor, member=subject, new_governance=self.new_governance()
        )

    def relay(self, actor: Member, subject: Member) -> Proposal:
        return services.rotation_propose(
            proposer=actor,
            member=subject,
            new_governance=self.new_governance(),
            signature=self.signature(),
        )

    def opened(self, subject: Member, proposal: Proposal) -> str:
        return (
            f"You proposed moving {subject.name}'s governance to "
            f"{proposal.new_governance_address}: proposal #{proposal.chain_proposal_id} is "
            "open for votes."
        )

    def refused(self, subject: Member, exc: Exception) -> HttpResponse:
        # Shown on the page again, with the address kept, rather than redirected.
        messages.error(self.request, refusal_message(exc))
        return render(self.request, self.template_name, self.context(subject))

    def context(self, member: Member) -> dict[str, Any]:
        return {**super().context(member), "new_governance": self.new_governance()}


@member_required
def proposals(request: HttpRequest) -> HttpResponse:
    rows = selectors.proposal_list(viewer=request.user)
    return render(
        request,
        "consortium/proposals.html",
        {
            "section": "proposals",
            "open_proposals": rows.filter(status=Proposal.Status.OPEN),
            # Open ones are few (each needs a member's signature); decided ones only grow.
            "decided_proposals": page_of(
                request, rows.exclude(status=Proposal.Status.OPEN).order_by("-chain_proposal_id")
            ),
        },
    )


class ProposalPage(_ConsortiumPage):
    """A proposal, where the members vote; after its deadline an admin closes it."""

    action = "Vote"
    template_name = "consortium/proposal.html"

    def subject(self) -> Proposal:
        return get_object_or_404(
            selectors.proposal_list(viewer=self.request.user),
            chain_proposal_id=self.kwargs["number"],
        )

    def support(self) -> bool:
        value = self.request.POST.get("support", "")
        if value not in ("yes", "no"):
            raise ServiceError("choose yes or no")
        return value == "yes"

    def typed(self, actor: Member, subject: Proposal) -> TypedData:
        return services.vote_typed_data(voter=actor, proposal=subject, support=self.support())

    def relay(self, actor: Member, subject: Proposal) -> Proposal:
        return services.vote_cast(
            voter=actor, proposal=subject, support=self.support(), signature=self.signature()
        )

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.POST.get("action") != "finalize":
            return super().post(request, **kwargs)
        item = self.subject()
        try:
            by = selectors.acting_staff(viewer=request.user, action=Action.FINALIZE).member
            services.proposal_finalize(proposal=item, by=by)
        except REFUSALS as exc:
            return self.refused(item, exc)
        messages.success(request, f"Proposal #{item.chain_proposal_id} is closed.")
        return redirect(request.path)

    def done(self, subject: Proposal, item: Proposal) -> HttpResponse:
        outcome = ""
        if item.status != Proposal.Status.OPEN:
            outcome = f" It is {item.get_status_display().lower()}."
        messages.success(
            self.request,
            f"Your {'yes' if self.support() else 'no'} vote on #{item.chain_proposal_id} is "
            f"recorded.{outcome}",
        )
        return redirect(self.request.path)

    def context(self, item: Proposal) -> dict[str, Any]:
        acting = self.acting_staff(item)
        own_vote = item.votes.filter(voter=acting.member).first() if acting else None
        return {
            "section": "proposals",
            "proposal": item,
            "votes": item.votes.select_related("voter").order_by("block_number"),
            "own_vote": own_vote,
            "can_vote": acting is not None and item.is_open and own_vote is None,
            "can_finalize": _allowed(self.request, Action.FINALIZE)
            and item.status == Proposal.Status.OPEN
            and not item.is_open,
            "demo_available": _demo_available(acting),
            "yes_percent": round(100 * item.yes / item.eligible) if item.eligible else 0,
            "no_percent": round(100 * item.no / item.eligible) if item.eligible else 0,
        }
