"""Fixed credentials: AK/SK (and a security token) from the environment or a profile file.

The environment has two families of variables, the official SDK's (``HUAWEICLOUD_SDK_*``)
and the Terraform provider's (``HW_*``); an AK of one is never paired with the SK of the
other. Every value is checked by ``reconciler.credcheck`` (no control character, no space,
ASCII only) before it is used, and so registered for scrubbing.

May import: the standard library, ``reconciler.model``, ``reconciler.errors``,
``reconciler.credcheck``, ``reconciler.api.protocol``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.api.protocol import Credentials
from reconciler.credcheck import header_credential
from reconciler.errors import UsageError
from reconciler.model import Secret

SDK_FAMILY = ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_SECURITY_TOKEN")
TERRAFORM_FAMILY = ("HW_ACCESS_KEY", "HW_SECRET_KEY", "HW_SECURITY_TOKEN")


@dataclass(frozen=True, slots=True)
class StaticProvider:
    """Credentials that do not change during the run."""

    credentials: Credentials
    source: str

    def current(self) -> Credentials:
        return self.credentials

    def __repr__(self) -> str:
        return f"StaticProvider({self.source})"


def value_of(environ: Mapping[str, str], name: str) -> str:
    """The variable's value, or "" when unset or blank (blank counts as unset)."""
    value = environ.get(name, "")
    return value if value.strip() else ""


def checked(*, ak: tuple[str, str], sk: tuple[str, str],
            token: tuple[str, str] | None) -> Credentials:
    """Credentials from ``(where, value)`` pairs, each checked for an HTTP header."""
    return Credentials(
        ak=header_credential(*ak), sk=Secret(header_credential(*sk)),
        security_token=Secret(header_credential(*token)) if token and token[1] else None)


def family_provider(environ: Mapping[str, str],
                    family: tuple[str, str, str]) -> StaticProvider | None:
    """The family's AK/SK when both are set, None when neither is; one alone is an error."""
    ak_var, sk_var, token_var = family
    ak, sk = value_of(environ, ak_var), value_of(environ, sk_var)
    if ak and sk:
        token = value_of(environ, token_var)
        credentials = checked(ak=(ak_var, ak), sk=(sk_var, sk),
                              token=(token_var, token) if token else None)
        return StaticProvider(credentials, f"environment ({ak_var} / {sk_var})")
    if ak or sk:
        missing = sk_var if ak else ak_var
        raise UsageError(f"{ak_var if ak else sk_var} is set but {missing} is not; set both "
                         "(credentials are never mixed across variable families)")
    return None
