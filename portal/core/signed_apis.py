"""The two routes of a signed action, declared once: the typed-data route answers what the
wallet signs, the relay route checks the signature and relays it.

An action names its action (``chain.actions``), the fields both routes read, how it finds
the object the action is about (``subject``) and the two service calls: ``typed`` builds
what the wallet signs, ``relay`` relays the signature (``SignedActionApis``). The base asks
the check the app registered with ``relay.register_checks`` who acts for the viewer, before
the input is read, so no route can skip it. The OpenAPI entries and the two URL patterns
(``signed_routes``) follow from the same declaration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from django.urls import URLPattern, path
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.core import relay
from portal.core.apis import signed_action_schema, typed_data
from portal.core.serializers import SignedInputSerializer, signature_field


class SignedActionApi(APIView):
    """Base of both routes: lookup, who acts, input, then the service."""

    action: ClassVar[str] = ""
    tags: ClassVar[Sequence[str]] = ()
    errors: ClassVar[Sequence[int]] = (400, 403, 404, 503)
    InputSerializer: ClassVar[type[serializers.Serializer] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "action" in cls.__dict__:
            extra = cls.schema_extra()
            if cls.tags:
                extra["tags"] = list(cls.tags)
            signed_action_schema(
                cls.action,
                request="InputSerializer" if cls.InputSerializer is not None else None,
                errors=cls.errors,
                **extra,
            )(cls)

    @classmethod
    def schema_extra(cls) -> dict[str, Any]:
        return {}

    def subject(self, request: Request, **kwargs: Any) -> Any:
        """The object the action is about, as the viewer may see it (404 otherwise)."""
        return None

    def act(self, actor: Any, subject: Any, data: dict[str, Any]) -> Any:
        """The app's service call, for ``actor`` (whom the registered check named)."""
        raise NotImplementedError

    def answer(self, result: Any) -> Response:
        raise NotImplementedError

    def post(self, request: Request, **kwargs: Any) -> Response:
        subject = self.subject(request, **kwargs)
        actor = relay.acting(self.action, request.user, subject)
        data: dict[str, Any] = {}
        if self.InputSerializer is not None:
            serializer = self.InputSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        return self.answer(self.act(actor, subject, data))


class TypedDataApi(SignedActionApi):
    """The typed-data route: answers the typed data ``act`` builds."""

    def answer(self, result: Any) -> Response:
        return Response(typed_data(result))


class RelayApi(SignedActionApi):
    """The relay route: answers what ``act`` relayed, through ``Output``."""

    errors = (400, 403, 404, 409, 503)
    Output: ClassVar[type[serializers.Serializer]]
    status_code: ClassVar[int] = status.HTTP_200_OK

    @classmethod
    def schema_extra(cls) -> dict[str, Any]:
        return {"relays": cls.Output, "status_code": cls.status_code}

    def answer(self, result: Any) -> Response:
        return Response(self.output(result), status=self.status_code)

    def output(self, result: Any) -> Any:
        return self.Output(result).data


def _input(
    name: str, *bases: type[serializers.Serializer], **fields: Any
) -> type[serializers.Serializer]:
    """A route's input serializer over ``bases``, published in the schema as ``name``."""
    meta = type("Meta", (), {"ref_name": name})
    return type(name, bases, {"Meta": meta, "__module__": __name__, **fields})


class SignedActionApis:
    """Both API routes of one signed action, declared once, mixed into the app's base view
    (its permissions and ``subject``): ``typed_data_api`` and ``relay_api`` are made from it.

    ``Fields`` are what both routes read (``RelayFields``, where the relay reads more); the
    relay route's input adds the signature (by ``signed_by``, where the member's governance
    address is not the only signer). ``inputs``
    are the two inputs' names in the schema and ``about`` the two routes' descriptions.
    """

    action: ClassVar[str] = ""
    tags: ClassVar[Sequence[str]] = ()
    Fields: ClassVar[type[serializers.Serializer] | None] = None
    RelayFields: ClassVar[type[serializers.Serializer] | None] = None
    signed_by: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, str]] = ("", "")
    about: ClassVar[tuple[str, str]] = ("", "")
    typed_errors: ClassVar[Sequence[int]] = (400, 403, 404, 503)
    relay_errors: ClassVar[Sequence[int]] = (400, 403, 404, 409, 503)
    Output: ClassVar[type[serializers.Serializer]]
    status_code: ClassVar[int] = status.HTTP_200_OK
    typed_data_api: ClassVar[type[TypedDataApi]]
    relay_api: ClassVar[type[RelayApi]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "action" in cls.__dict__ and not issubclass(cls, SignedActionApi):
            cls.typed_data_api = cls._route(TypedDataApi, "TypedData", 0, cls._typed_input())
            cls.relay_api = cls._route(RelayApi, "Relay", 1, cls._relay_input())

    @classmethod
    def _typed_input(cls) -> type[serializers.Serializer] | None:
        return _input(cls.inputs[0], cls.Fields) if cls.Fields is not None else None

    @classmethod
    def _relay_input(cls) -> type[serializers.Serializer]:
        fields = cls.RelayFields or cls.Fields
        bases = (SignedInputSerializer,) + ((fields,) if fields is not None else ())
        own = {"signature": signature_field(cls.signed_by)} if cls.signed_by else {}
        return _input(cls.inputs[1], *bases, **own)

    @classmethod
    def _route(
        cls,
        base: type[SignedActionApi],
        role: str,
        index: int,
        input_serializer: type[serializers.Serializer] | None,
    ) -> Any:
        errors = cls.typed_errors if base is TypedDataApi else cls.relay_errors
        call = "typed" if base is TypedDataApi else "relay"
        return type(
            f"{cls.__name__}{role}Api",
            (cls, base),
            {
                "__module__": cls.__module__,
                "__doc__": cls.about[index],
                "action": cls.action,
                "tags": cls.tags,
                "errors": errors,
                "InputSerializer": input_serializer,
                "status_code": cls.status_code,
                "act": lambda self, actor, subject, data: getattr(self, call)(actor, subject, data),
            },
        )

    def typed(self, actor: Any, subject: Any, data: dict[str, Any]) -> Any:
        """The service call building the typed data, for ``actor``."""
        raise NotImplementedError

    def relay(self, actor: Any, subject: Any, data: dict[str, Any]) -> Any:
        """The service call relaying ``data["signature"]``, for ``actor``."""
        raise NotImplementedError


def signed_routes(
    route: str,
    typed: type[APIView] | type[SignedActionApis],
    relay_view: type[APIView] | None = None,
    *,
    name: str,
    typed_name: str = "",
) -> list[URLPattern]:
    """A signed action's two routes: the relay at ``route``, the typed-data route beside it at
    ``typed-data/`` (named ``typed_name``, else ``<name>-typed-data``). ``typed`` is the
    action's declaration, or with ``relay_view`` a typed-data view of its own."""
    if relay_view is None:
        assert issubclass(typed, SignedActionApis)
        typed_view: type[APIView] = typed.typed_data_api
        relay_view = typed.relay_api
    else:
        assert issubclass(typed, APIView)
        typed_view = typed
    return [
        path(route + "typed-data/", typed_view.as_view(), name=typed_name or f"{name}-typed-data"),
        path(route, relay_view.as_view(), name=name),
    ]
