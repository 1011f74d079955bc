"""What a service raises when it refuses: a sentence a person can act on, and its kind.

Services know nothing of HTTP. The kind (the class) says why the action was refused;
one place, ``portal.core.web.status_of``, turns a kind into a status code for the API's
exception handler and for the pages' JSON answers alike.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal a person can act on: the input is invalid or the action is not possible now."""

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Invalid(ServiceError):
    """The request itself is wrong: a malformed field, a missing signature."""


class NotFound(ServiceError):
    """The thing named does not exist, or not for this asker."""

    def __init__(self, message: str, *, code: str = "not_found") -> None:
        super().__init__(message, code=code)


class Forbidden(ServiceError):
    """The asker's standing does not allow this action.

    ``rule`` is who may, in a line, as a page states it (a page offers the action only to
    those who may); ``message`` says why this asker may not, as the API answers.
    """

    def __init__(self, message: str, *, code: str = "permission_denied", rule: str = "") -> None:
        super().__init__(message, code=code)
        self.rule = rule or message


class Conflict(ServiceError):
    """The action clashes with the state of the thing it acts on."""


class TooLarge(ServiceError):
    """More bytes than this portal accepts."""


class Throttled(ServiceError):
    """Too many of these in too short a time: wait, then try again."""
