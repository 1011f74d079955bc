"""The pages' side of a signed action, declared once as its API routes are (``signed_apis``).

A declaration names its action (``chain.actions``), how it finds the object the action is
about (``subject``), the typed data the wallet signs (``typed``) and the service that relays
the signature (``relay``). Who acts is the answer of the check the app registered with
``relay.register_checks``, the one the API's routes ask: a page and the API cannot disagree.
From one declaration follow the typed-data route static/js/wallet.js calls and the relay a
page's form posts; ``SignedActionPage`` is an action with a page of its own, which also
shows itself and answers its form with a message and a redirect.

Every refusal (``web.REFUSALS``) is JSON on the typed-data route and a message on the page;
a refused standing reads as the rule of who may (``Forbidden.rule``), since a page offers the
action only to those who may.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Self

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views import View
from django.views.decorators.http import require_POST

from chain.actions import TypedData
from portal.core import relay
from portal.core.exceptions import Forbidden
from portal.core.web import (
    REFUSALS,
    posted_signature,
    refusal_message,
    refusal_response,
    typed_response,
)

ViewFunction = Callable[..., HttpResponseBase]


class SignedAction(View):
    """One signed action as the pages take it; ``typed_data_view`` is its JSON route."""

    action: ClassVar[str] = ""
    #: who may open its routes at all (login_required, or an app's stricter decorator)
    guard: ClassVar[Callable[[ViewFunction], ViewFunction]] = login_required

    def subject(self) -> Any:
        """The object the action is about, as the viewer may see it (404 otherwise)."""
        return None

    def typed(self, actor: Any, subject: Any) -> TypedData:
        """The app's service call building the typed data, for ``actor``."""
        raise NotImplementedError

    def relay(self, actor: Any, subject: Any) -> Any:
        """The app's service call relaying ``self.signature()``, for ``actor``."""
        raise NotImplementedError

    def signer(self, actor: Any, subject: Any, typed: TypedData) -> str:
        """The address the wallet must sign with: the acting member's governance address."""
        return str(actor.governance_address)

    def signature(self) -> str | None:
        return posted_signature(self.request)

    def acting(self, subject: Any) -> Any:
        """Who acts for the viewer: the registered check's answer, or Forbidden."""
        return relay.acting(self.action, self.request.user, subject)

    def may_act(self, subject: Any) -> Any:
        """As ``acting``, None where the viewer may not (a page then offers no button)."""
        try:
            return self.acting(subject)
        except Forbidden:
            return None

    def relayed(self, subject: Any) -> Any:
        """Relay the form's signature: who acts, then the service; raises REFUSALS."""
        return self.relay(self.acting(subject), subject)

    def typed_answer(self) -> JsonResponse:
        try:
            subject = self.subject()
            actor = self.acting(subject)
            typed = self.typed(actor, subject)
        except REFUSALS as exc:
            return refusal_response(exc)
        return typed_response(typed, self.signer(actor, subject, typed))

    @classmethod
    def bound(cls, request: HttpRequest, **kwargs: Any) -> Self:
        """The declaration for one request, as ``as_view`` would set it up."""
        action = cls()
        action.setup(request, **kwargs)
        return action

    @classmethod
    def typed_data_view(cls) -> ViewFunction:
        """The POST route answering ``{"typed": …, "signer": …}`` for the wallet to sign."""

        def view(request: HttpRequest, **kwargs: Any) -> HttpResponseBase:
            return cls.bound(request, **kwargs).typed_answer()

        view.__name__ = view.__qualname__ = f"{cls.__name__}.typed_data"
        view.__module__, view.__doc__ = cls.__module__, cls.__doc__
        view.signed_action = cls  # type: ignore[attr-defined]  # for tests walking the URLconf
        return require_POST(cls.guard(view))


class SignedActionPage(SignedAction):
    """A signed action with a page of its own: GET shows it, POST relays the signature."""

    template_name: ClassVar[str] = ""

    def context(self, subject: Any) -> dict[str, Any]:
        return {}

    def done(self, subject: Any, result: Any) -> HttpResponse:
        """The answer once the action is relayed: a message and where to go next."""
        raise NotImplementedError

    def refused(self, subject: Any, exc: Exception) -> HttpResponse:
        """The answer to a refusal: its message, on this page again."""
        messages.error(self.request, refusal_message(exc))
        return redirect(self.request.path)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return render(request, self.template_name, self.context(self.subject()))

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        subject = self.subject()
        try:
            result = self.relayed(subject)
        except REFUSALS as exc:
            return self.refused(subject, exc)
        return self.done(subject, result)

    @classmethod
    def page_view(cls) -> ViewFunction:
        return cls.guard(cls.as_view())


def page_routes(
    route: str, page: type[SignedActionPage], *, name: str, typed: str = ""
) -> list[URLPattern]:
    """The page of a signed action and, beside it at ``typed-data``, its typed-data route
    (named ``typed``, else ``<name>_typed_data``)."""
    return [
        path(route, page.page_view(), name=name),
        path(route + "typed-data", page.typed_data_view(), name=typed or f"{name}_typed_data"),
    ]
