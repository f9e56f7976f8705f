"""The official SDK's INI profile file (``HUAWEICLOUD_SDK_CREDENTIALS_FILE``, else
``~/.huaweicloud/credentials``).

The SDK reads the section named after the credential type; key pair services are regional,
so that is ``[basic]``::

    [basic]
    ak = ...
    sk = ...
    security_token = ...      # optional
    project_id = ...          # optional
    iam_endpoint = ...        # optional
    idp_id = ...              # with id_token_file: federated login, which wins over ak/sk
    id_token_file = ...

Values are taken literally (no ``%`` interpolation). A file named by the variable must
exist; the default file is only read when it exists. A target's ``credentials.profile`` names
another section the SDK's way (its ``ProfileCredentialProvider("basic-partner")`` reads
``[basic-partner]``: sections whose name starts with ``basic`` hold regional credentials);
that section, and so a file, must exist.

May import: the standard library, ``reconciler.errors``.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import UsageError

FILE_VAR = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
SECTION = "basic"
KEYS = ("ak", "sk", "security_token", "project_id", "iam_endpoint", "idp_id", "id_token_file")
MAX_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Profile:
    """The ``[basic]`` section of a profile file, and where it was read."""

    path: str
    values: Mapping[str, str]
    section: str = SECTION

    @property
    def where(self) -> str:
        return f"profile file {self.path} [{self.section}]"

    def get(self, key: str) -> str:
        return self.values.get(key, "").strip()


def profile_path(environ: Mapping[str, str]) -> tuple[str, bool] | None:
    """The file to read and whether it was named explicitly; None without one to read."""
    named = environ.get(FILE_VAR, "").strip()
    if named:
        return named, True
    home = environ.get("HOME", "").strip()
    return (str(Path(home) / ".huaweicloud" / "credentials"), False) if home else None


def load_profile(environ: Mapping[str, str], section: str | None = None, *,
                 origin: str = "") -> Profile | None:
    """The profile's ``[basic]`` section, None when there is no file to read; or the named
    ``section``, which must exist (``origin`` says who named it, for the messages)."""
    found = profile_path(environ)
    by = f" ({origin})" if origin else ""
    if found is None or (section is not None and not found[1] and not Path(found[0]).is_file()):
        if section is None:
            return None
        where = found[0] if found else "~/.huaweicloud/credentials"
        raise UsageError(f"the profile [{section}]{by} needs the SDK's credentials file, and "
                         f"there is none at {where}; create it with a [{section}] section, or "
                         f"name it in {FILE_VAR}")
    path, named = found
    if not named and not Path(path).is_file():
        return None
    try:
        text = Path(path).read_bytes()[:MAX_BYTES + 1]
    except OSError as exc:
        raise UsageError(f"cannot read the credentials file {path} ({FILE_VAR}): "
                         f"{exc.strerror or exc}; fix the path or unset {FILE_VAR}") from None
    if len(text) > MAX_BYTES:
        raise UsageError(f"the credentials file {path} is larger than {MAX_BYTES} bytes; "
                         "it should hold a few INI lines")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text.decode("utf-8", "replace"), source=path)
    except configparser.Error as exc:
        line = getattr(exc, "lineno", None)
        at = f" line {line}" if line else ""
        raise UsageError(f"the credentials file {path}{at} is not an INI file the SDK reads "
                         f"({type(exc).__name__}); see the [basic] example in the README"
                         ) from None
    if section is not None:
        if not parser.has_section(section):
            raise UsageError(f"the credentials file {path} has no [{section}] section{by}; "
                             "add it (ak and sk, or idp_id and id_token_file), or fix the "
                             "profile's name")
        values = {k: v for k, v in parser.items(section) if k in KEYS}
        return Profile(path=path, values=values, section=section)
    if not parser.has_section(SECTION):
        raise UsageError(f"the credentials file {path} has no [{SECTION}] section; key pair "
                         "services read [basic] (as the official SDK does)")
    values = {k: v for k, v in parser.items(SECTION) if k in KEYS}
    return Profile(path=path, values=values)
