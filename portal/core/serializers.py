"""Input fields shared by the apps' APIs: hex values with their pattern in the schema, and
the signature of a signed action."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from portal.core.signing import signature_or_demo


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
