"""An admin's open staff invitations: mail the link again, or cancel it.

Kept apart from services.py (the consortium's chain-facing services); these touch only the
portal's own accounts. The link is mailed through Django's email backend (the console in the
embedded stack), so the portal never needs to show it anywhere but to the inviting admin.
"""

from __future__ import annotations

from django.core.mail import send_mail
from django.utils import timezone

from portal.consortium.models import Invitation, Staff
from portal.core.exceptions import Forbidden, ServiceError


def _check(admin: Staff, invitation: Invitation) -> None:
    if admin.role != Staff.Role.ADMIN or admin.member_id != invitation.member_id:
        raise Forbidden("only the member's own admin can manage its invitations")
    if not invitation.is_open:
        raise ServiceError(
            f"the invitation for {invitation.email} is already used or expired: invite again"
        )


def invitation_resend(*, admin: Staff, invitation: Invitation, link: str) -> None:
    """Mail the invitation's link to the invited address."""
    _check(admin, invitation)
    role = invitation.get_role_display().lower()  # type: ignore[attr-defined]
    try:
        sent = send_mail(
            subject=f"Your invitation to {invitation.member.name} on MedChain",
            message=(
                f"{admin.user.get_username()} invites you to join {invitation.member.name} on the "
                f"MedChain portal as {role}.\n\nChoose your username and password here:\n{link}\n\n"
                f"The link works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC."
            ),
            from_email=None,
            recipient_list=[invitation.email],
            fail_silently=False,
        )
    except OSError as exc:  # smtplib.SMTPException is one
        raise ServiceError(f"the mail to {invitation.email} could not be sent: {exc}") from exc
    if not sent:
        raise ServiceError(f"the mail to {invitation.email} was not sent: check EMAIL_BACKEND")


def invitation_cancel(*, admin: Staff, invitation: Invitation) -> None:
    """End the invitation now: its link then answers 'unknown, used or expired'."""
    _check(admin, invitation)
    invitation.expires_at = timezone.now()
    invitation.save(update_fields=["expires_at"])
