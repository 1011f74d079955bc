"""Input fields shared by the apps' APIs: hex values with their pattern in the schema, and
the signature of a signed action; and the base of what the APIs answer (``OutputSerializer``)."""

from __future__ import annotations

import copy
import datetime
import inspect
from collections.abc import Callable
from functools import cached_property, partialmethod
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import FieldDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field as ModelField
from django.db.models import Model
from django.utils.encoding import force_str
from django.utils.hashable import make_hashable
from rest_framework import ISO_8601, serializers
from rest_framework.fields import Field, SkipField, get_attribute, is_simple_callable
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings

from portal.core.signing import signature_or_demo

#: a ModelSerializer class -> the fields DRF builds for it from its model (copied for each use)
_MODEL_FIELDS: dict[type, dict[str, Field]] = {}
#: (class, attribute) -> whether DRF calls that attribute (a method with no required
#: argument, such as ``get_role_display``); the answer is the class's, so it is asked once.
_CALLS: dict[tuple[type, str], bool] = {}
#: (model, attribute) -> Django's ``get_<field>_display`` for it, read once (``_display``)
_DISPLAYS: dict[tuple[type, str], Callable[[Model], Any] | None] = {}


def _source_value(instance: Any, attrs: list[str]) -> Any:
    """DRF's ``fields.get_attribute`` for model instances and dicts, without its per-row
    ``inspect.signature`` of every callable it meets (most of a list page's time)."""
    for i, attr in enumerate(attrs):
        if type(instance) is dict:  # a row read with values(): a missing key raises for DRF
            instance = instance[attr]
            continue
        if not isinstance(instance, Model):
            return get_attribute(instance, attrs[i:])  # a dict, or None on the way: DRF's
        owner = type(instance)
        try:
            display = _DISPLAYS[(owner, attr)]
        except KeyError:
            display = _DISPLAYS[(owner, attr)] = _display(owner, attr)
        if display is not None:
            instance = display(instance)
            continue
        instance = getattr(instance, attr)
        if callable(instance):
            calls = _CALLS.get((owner, attr))
            if calls is None:
                calls = _CALLS[(owner, attr)] = is_simple_callable(instance)
            if calls:
                instance = instance()
    return instance


def _display(owner: type[Model], attr: str) -> Callable[[Model], Any] | None:
    """Django's own ``get_<field>_display`` of a field with fixed choices, with the dict of
    its labels built once per class instead of on every call (Django builds it per call:
    a quarter of the members route's CPU); None for any other attribute."""
    if not (attr.startswith("get_") and attr.endswith("_display")):
        return None
    try:
        field = owner._meta.get_field(attr[4:-8])
    except FieldDoesNotExist:
        return None
    if not isinstance(field, ModelField):  # a relation's other side has no choices
        return None
    method = inspect.getattr_static(owner, attr, None)
    if not (
        isinstance(method, partialmethod)
        and method.func is Model._get_FIELD_display  # type: ignore[attr-defined]
        and method.keywords == {"field": field}
        and isinstance(field.choices, list | tuple)  # not a callable's, asked per call
    ):
        return None
    labels = dict(make_hashable(field.flatchoices))
    attname = field.attname

    def display(instance: Model) -> Any:
        value = getattr(instance, attname)
        return force_str(labels.get(make_hashable(value), value), strings_only=True)

    return display


def _represent(field: Field) -> Callable[[Any], Any]:
    """The field's ``to_representation``, or a plain conversion that gives the same value
    for the fields a page has most of (DRF's is a method call and, for a timestamp, a
    time zone check, a settings lookup and a format test per value): ``int`` for an
    ``IntegerField``, ``str`` for a ``CharField`` and a ``UUIDField`` in its usual
    format, and for a ``DateTimeField`` in ISO 8601 with a time zone, an aware
    timestamp's ISO form in that zone (anything else there goes to DRF's own)."""
    kind = type(field)
    if kind is serializers.IntegerField:
        return int  # DRF: int(value)
    if kind is serializers.CharField:
        return str  # DRF: str(value)
    if kind is serializers.UUIDField and getattr(field, "uuid_format", None) == "hex_verbose":
        return str  # DRF: str(value)
    if kind is serializers.DateTimeField:
        output = getattr(field, "format", api_settings.DATETIME_FORMAT)
        zone = getattr(field, "timezone", None)
        if isinstance(output, str) and output.lower() == ISO_8601 and zone is not None:
            return _iso_timestamp(zone, field.to_representation)
    return field.to_representation


def _iso_timestamp(zone: Any, drf: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def represent(value: Any) -> Any:
        # DRF's DateTimeField.to_representation for an aware datetime (enforce_timezone's
        # astimezone, then isoformat with UTC as Z); the rest, and its errors, are DRF's.
        if type(value) is not datetime.datetime or value.utcoffset() is None:
            return drf(value)
        try:
            text = value.astimezone(zone).isoformat()
        except OverflowError:
            return drf(value)
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return represent


def timestamps() -> Callable[[Any], Any]:
    """What an output serializer's ``DateTimeField()`` answers for a timestamp, for a page
    built without serializer fields (the proposals' and the catalogue's list routes): the
    request's time zone is read once, as ``FastRepresentation`` reads it once per page."""
    field = serializers.DateTimeField()
    field.timezone = field.default_timezone()  # type: ignore[assignment]
    return _represent(field)


def iso_timestamps() -> bool:
    """Whether an output serializer's ``DateTimeField()`` answers a timestamp as the
    database writes it with ``portal.core.prepared.IsoTimestamp``: in ISO 8601, in UTC
    (the portal's time zone; a request may activate another)."""
    zone = serializers.DateTimeField().default_timezone()
    utc = zone is datetime.UTC or getattr(zone, "key", None) == "UTC"
    return utc and str(api_settings.DATETIME_FORMAT).lower() == ISO_8601


#: fields whose unbound state a serializer never changes but by binding them (their name,
#: parent, label and source), which sets attributes of the copy's own
_LEAVES = frozenset(
    {
        serializers.IntegerField,
        serializers.CharField,
        serializers.UUIDField,
        serializers.DateTimeField,
        serializers.BooleanField,
        serializers.SerializerMethodField,
    }
)


def _copies(fields: dict[str, Field]) -> dict[str, Field]:
    """What DRF's ``get_fields`` answers, a copy of each declared field, with a shallow copy
    of a plain field instead of DRF's deep one (which builds the field anew from its
    arguments, validators and all: most of a small page's serializer setup). A nested
    serializer, or any other field, is copied as DRF copies it."""
    return {
        name: copy.copy(field) if type(field) in _LEAVES else copy.deepcopy(field)
        for name, field in fields.items()
    }


class FastRepresentation:
    """For a serializer's answers (``OutputSerializer``): the same as DRF's, field by field,
    at less cost per row.

    A list page serializes every field of every row through DRF's ``Field.get_attribute``,
    which asks ``inspect.signature`` of any method a field reads (``get_status_display``)
    on every row, and walks generators and ABC checks per field. Here the fields are
    listed once per serializer (a page shares one) and a model's attributes are read
    directly; anything else (a dict, a missing attribute, a related field with its own
    lookup) goes through DRF's own code, errors included.
    """

    def get_fields(self) -> dict[str, Field]:
        """A ``ModelSerializer``'s fields are built from its model once per class, not on
        every request (DRF introspects the model each time: a fifth of the nodes route's
        CPU); each serializer gets copies, as DRF's own declared fields are copied."""
        if not isinstance(self, serializers.ModelSerializer):
            return _copies(self._declared_fields)  # type: ignore[attr-defined]
        built = _MODEL_FIELDS.get(type(self))
        if built is None:
            built = _MODEL_FIELDS[type(self)] = super().get_fields()  # type: ignore[misc]
        return _copies(built)

    @cached_property
    def _plan(self) -> list[tuple[Field, str, list[str], str | None, Callable[[Any], Any], bool]]:
        """Per readable field: the field, its name, its source attributes (and the one
        key of a plain row, if one), its ``to_representation`` (``_represent``), and
        whether its value may be read here (DRF's own ``get_attribute``, not a field's
        override)."""
        base = Field.get_attribute
        readable = list(self._readable_fields)  # type: ignore[attr-defined]
        for field in readable:
            if isinstance(field, serializers.DateTimeField) and not hasattr(field, "timezone"):
                # What DRF asks for each value (the current time zone, through the lazy
                # settings and a context-local), asked once for the page.
                field.timezone = field.default_timezone()  # type: ignore[assignment]
        return [
            (
                f,
                str(f.field_name),
                f.source_attrs,
                f.source_attrs[0] if len(f.source_attrs) == 1 else None,
                _represent(f),
                type(f).get_attribute is base,
            )
            for f in readable
        ]

    def to_representation(self, instance: Any) -> dict[str, Any]:
        ret: dict[str, Any] = {}
        row = type(instance) is dict  # a row read with values(), such as the catalogue's
        for field, name, attrs, key, represent, plain in self._plan:
            if plain:
                try:
                    if row and key is not None:
                        value = instance[key]
                    else:
                        value = _source_value(instance, attrs)
                except Exception:  # DRF's own lookup below says what is wrong, or skips it
                    plain = False
            if not plain:
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
                if isinstance(value, PKOnlyObject) and value.pk is None:
                    value = None
            ret[name] = None if value is None else represent(value)
        return ret


class OutputSerializer(FastRepresentation, serializers.Serializer):
    """The base of what a route answers (never what it takes: it validates nothing)."""


def hex_field(digits: int, what: str, **kwargs: Any) -> serializers.RegexField:
    """0x and `digits` hex digits; the pattern is published in the schema."""
    pattern = rf"0x[0-9a-fA-F]{{{digits}}}"
    # A blank value skips the pattern in DRF; the published pattern says so too.
    pattern = rf"^({pattern})?$" if kwargs.get("allow_blank") else rf"^{pattern}$"
    return serializers.RegexField(
        pattern,
        max_length=digits + 2,
        error_messages={"invalid": f"must be {what}: 0x followed by {digits} hex digits"},
        **kwargs,
    )


def signature_field(who: str, *, required: bool = False) -> serializers.RegexField:
    """A 65-byte (r, s, v) signature in hex; optional where the demo keystore may sign."""
    body = "(0x)?[0-9a-fA-F]{130}"
    return serializers.RegexField(
        rf"^{body}$" if required else rf"^({body})?$",
        max_length=132,
        required=required,
        allow_blank=not required,
        error_messages={"invalid": "must be 65 bytes (r, s, v): 0x followed by 130 hex digits"},
        help_text=(
            f"hex EIP-712 signature by {who} over the typed data from the matching typed-data "
            "route (eth_signTypedData_v4)"
            + ("" if required else "; required unless demo_keystore is true")
        ),
    )


def demo_keystore_field() -> serializers.BooleanField:
    return serializers.BooleanField(
        default=False,
        help_text=(
            "true asks a portal running the embedded demo keystores to sign with the member's "
            "demo keystore instead of a signature; refused where demo keystores are disabled. "
            "Without a signature and without it, the action is refused"
        ),
    )


class SignedInputSerializer(serializers.Serializer):
    """A signed action's input: the wallet's signature, or an explicit ask for the demo keystore.

    `validated_data["signature"]` is the signature, or None for the demo keystore.
    """

    signature = signature_field("the member's governance address")
    demo_keystore = demo_keystore_field()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        attrs["signature"] = signature_or_demo(
            signature=attrs.get("signature"), demo_keystore=attrs.pop("demo_keystore", False)
        )
        return attrs


def username_field() -> serializers.RegexField:
    return serializers.RegexField(
        r"^[\w.@+-]+$",
        max_length=150,
        error_messages={"invalid": "may contain only letters, digits and @ . + - _"},
    )


def new_password(value: str) -> str:
    """A new password, checked by Django's AUTH_PASSWORD_VALIDATORS, for a serializer's
    ``validate_<field>``: each validator's message becomes one error of the field."""
    try:
        password_validation.validate_password(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(list(exc.messages)) from exc
    return value
