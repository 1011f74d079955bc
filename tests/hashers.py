"""The password hasher the tests use: Django's PBKDF2 at one iteration.

Django's 1,000,000 iterations cost about 0.3 s a hash here, paid at every staff account
made and every sign-in. The hashes keep Django's ``pbkdf2_sha256`` format with their
iteration count inside, so a server process started by a test (with the default hashers)
still checks them.
"""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class OneIterationPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1
