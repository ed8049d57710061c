"""Secrets in the configuration: masked everywhere, revealed only where a request is built.

``Secret`` is a pydantic ``SecretStr`` that cannot be empty: an empty token would otherwise
read as "no token" and switch authentication off. Its repr, ``str()``, JSON dump and any
validation error show ``**********``; :func:`reveal` is the one way back to the text, called
at the edge where a header is set or a password compared.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, SecretStr


def _not_empty(secret: SecretStr) -> SecretStr:
    if not secret.get_secret_value():
        raise ValueError("must not be empty (leave the key out for no secret)")
    return secret


Secret = Annotated[SecretStr, AfterValidator(_not_empty)]


def reveal(secret: SecretStr | None) -> str | None:
    """The secret's text, or ``None`` when it is not set."""
    return None if secret is None else secret.get_secret_value()
