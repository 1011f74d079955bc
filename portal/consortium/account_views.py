"""Pages for the people acting for a member: sign-in with its second factor, API tokens,
staff and invitations."""

from __future__ import annotations

import math
from base64 import b32encode
from typing import Any

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.consortium import invitations as mail
from portal.consortium import selectors, services
from portal.consortium.models import Invitation, Staff
from portal.consortium.selectors import needs_second_factor
from portal.consortium.views import member_required
from portal.core.ratelimit import client_address
from portal.core.signin import SignInLocked, signin_check, signin_failed, signin_succeeded
from portal.core.tokens import api_token_list, api_token_revoke
from portal.core.web import REFUSALS, refusal_message


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
        if not needs_second_factor(user):
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
        label="Six-digit code from your authenticator app, or a recovery code",
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


RECOVERY_CODES = 10


def _wait_words(locked_until: Any) -> str:
    """The true wait of django-otp's throttle (1 s, 2 s, 4 s... after successive wrong codes)."""
    seconds = max(1, math.ceil((locked_until - timezone.now()).total_seconds()))
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _recovery_codes(user: Any) -> list[str]:
    """Fresh one-use recovery codes (django-otp's static tokens), replacing any earlier ones."""
    device, _ = StaticDevice.objects.get_or_create(user=user, name="Recovery codes")
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    return codes


def _verify(user: Any, device: TOTPDevice, token: str) -> tuple[Any, str]:
    """(the device that accepted `token`, or None; a refusal to show, or "").

    A six-digit code is the authenticator app's; anything else is tried as a recovery code.
    """
    if token.isdigit():
        allowed, why = device.verify_is_allowed()
        if not allowed:
            return None, (
                f"Too many wrong codes: wait {_wait_words(why['locked_until'])}, "
                "then type the newest code."
            )
        return (device if device.verify_token(token) else None), ""
    for recovery in StaticDevice.objects.filter(user=user, confirmed=True):
        allowed, why = recovery.verify_is_allowed()
        if not allowed:
            return None, (
                f"Too many wrong codes: wait {_wait_words(why['locked_until'])}, "
                "then type a recovery code again."
            )
        if recovery.verify_token(token.lower()):
            return recovery, ""
    return None, ""


@login_required
def two_factor(request: HttpRequest) -> HttpResponse:
    """Verify a TOTP code (or a recovery code); the first visit creates an unconfirmed device
    and shows its QR code, and confirming it shows the recovery codes, once."""
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
    posted = request.method == "POST" and form.is_valid()
    # Codes count towards the same lockout as passwords: the password alone is not enough.
    locked = _lockout_message(request, user.get_username()) if posted else None
    if locked:
        messages.error(request, locked)
    elif posted:
        token = form.cleaned_data["token"].strip()
        accepted, refusal = _verify(user, device, token)
        if refusal:
            messages.error(request, refusal)
        elif accepted is not None:
            otp_login(request, accepted)
            signin_succeeded(username=user.get_username())
            if not device.confirmed:
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                codes = _recovery_codes(user)
                return render(
                    request,
                    "consortium/recovery_codes.html",
                    {"codes": codes, "next": next_url},
                )
            if accepted is not device:
                left = StaticToken.objects.filter(device__user=user).count()
                messages.warning(
                    request,
                    f"Signed in with a recovery code; {left} remain. Each works once: if you "
                    "lost your phone, ask the portal's operator to remove your authenticator "
                    "app, then set it up again.",
                )
            else:
                messages.success(request, "Second factor verified.")
            return redirect(next_url)
        else:
            signin_failed(username=user.get_username(), address=client_address(request))
            messages.error(
                request,
                "That code is not valid. Check your device's clock and type the newest code.",
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
            if request.POST.get("action") in ("resend", "cancel"):
                _invitation_action(request, own)
                return redirect("staff")
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
                try:
                    mail.invitation_resend(admin=own, invitation=invitation, link=link)
                except REFUSALS as exc:
                    messages.warning(request, f"Invitation created, but {refusal_message(exc)}")
                else:
                    messages.success(
                        request,
                        f"Invitation for {invitation.email} created and mailed. Its link is "
                        "also under Open invitations, to copy.",
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


def _invitation_action(request: HttpRequest, own: Staff) -> None:
    invitation = get_object_or_404(
        selectors.invitation_list(viewer=request.user), pk=request.POST.get("invitation")
    )
    if request.POST["action"] == "cancel":
        mail.invitation_cancel(admin=own, invitation=invitation)
        messages.success(
            request,
            f"The invitation for {invitation.email} is cancelled: its link no longer works.",
        )
        return
    link = request.build_absolute_uri(reverse("invitation_accept", args=[invitation.token]))
    mail.invitation_resend(admin=own, invitation=invitation, link=link)
    messages.success(request, f"The invitation is mailed again to {invitation.email}.")


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
