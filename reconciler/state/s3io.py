"""Objects in one S3-compatible bucket (OBS, MinIO, Ceph, AWS): the few calls state needs.

boto3 is imported only here, and only when a remote backend is opened, so that commands
using a local state never pay for it (``reconciler --version`` stays fast). Every failure
becomes a ``StateError`` naming the object and what to do; a failed precondition (a
conditional write that lost) is ``ConditionFailed`` for the caller to explain.

Credentials (never in messages): ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
(``AWS_SESSION_TOKEN``), else OBS's own ``OBS_ACCESS_KEY_ID``/``OBS_SECRET_ACCESS_KEY``
(``OBS_SECURITY_TOKEN``), else the temporary credentials of an OIDC login when that is what
the cloud's credential chain uses (the same provider, so one token exchange serves both and
boto3 asks it again before they expire), else boto3's chain (shared files, instance roles).

The endpoint is parsed by ``reconciler.urls`` (https, or http for loopback only) and botocore
is given ``Endpoint.url``; the proxy is chosen by ``reconciler.proxies`` from the injected
environment and handed to botocore explicitly (so it does not read ``os.environ`` for one),
and ``--debug`` names it (``reconciler.proxy``). An object is read in chunks up to
``MAX_OBJECT_BYTES`` and refused past it (a ``StateError`` naming the bucket and key).

May import: ``reconciler.model``, ``reconciler.errors``, ``reconciler.credcheck``,
``reconciler.credentials``, ``reconciler.urls``, ``reconciler.proxies``, the stdlib;
boto3/botocore lazily.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from reconciler.credcheck import header_credential
from reconciler.errors import StateError, UsageError
from reconciler.model import S3Location
from reconciler.proxies import choose_proxy
from reconciler.urls import Endpoint, parse_endpoint

DEFAULT_REGION = "us-east-1"  # only signs requests; S3-compatible stores accept it
ADDRESSING_ENV = "RECONCILER_BACKEND_ADDRESSING"
_OBS_HOST = re.compile(r"(?:^|\.)obs\.([a-z0-9-]+)\.myhuaweicloud\.(?:com|eu)$")
_VIRTUAL_HOSTS = (".myhuaweicloud.com", ".myhuaweicloud.eu", ".amazonaws.com")
_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NEVER_ETAG = '"00000000000000000000000000000000"'
# The most an object of the state is read to: what ``state push`` reads from a file, 1 GiB
# (a local state is not capped: it is the user's own file, not another party's answer).
MAX_OBJECT_BYTES = 1 << 30
_CHUNK = 1 << 20
_T = TypeVar("_T")
proxy_log = logging.getLogger("reconciler.proxy")


class ConditionFailed(Exception):
    """A conditional request was refused (412/409): someone else wrote first."""


def parsed_endpoint(location: S3Location) -> Endpoint | None:
    """The endpoint as ``reconciler.urls`` reads it; None: boto3's default (AWS)."""
    if location.endpoint is None:
        return None
    return parse_endpoint(location.endpoint, what=f"the endpoint of {location.url}")


def resolve_region(location: S3Location, environ: Mapping[str, str]) -> str:
    """The backend block's region, else AWS_REGION/AWS_DEFAULT_REGION, else an OBS
    endpoint's own region (obs.REGION.myhuaweicloud.com), else us-east-1."""
    if location.region:
        return location.region
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name]
    endpoint = parsed_endpoint(location)
    match = _OBS_HOST.search(endpoint.host if endpoint else "")
    return match.group(1) if match else DEFAULT_REGION


def addressing_style(location: S3Location, environ: Mapping[str, str]) -> str:
    """Path-style for custom endpoints (MinIO, Ceph, moto need it); virtual-hosted for AWS and
    OBS, which address buckets by host name. ``RECONCILER_BACKEND_ADDRESSING`` overrides."""
    chosen = environ.get(ADDRESSING_ENV, "").strip().lower()
    if chosen in ("path", "virtual"):
        return chosen
    if chosen:
        raise UsageError(f"{ADDRESSING_ENV}={chosen!r}: use path or virtual.")
    endpoint = parsed_endpoint(location)
    if endpoint is None:
        return "virtual"
    return "virtual" if endpoint.host.removesuffix(".").endswith(_VIRTUAL_HOSTS) else "path"


def _credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """The first family of variables with both keys set, each checked (``credcheck``)."""
    for prefix, token in (("AWS", "AWS_SESSION_TOKEN"), ("OBS", "OBS_SECURITY_TOKEN")):
        ak_var, sk_var = f"{prefix}_ACCESS_KEY_ID", f"{prefix}_SECRET_ACCESS_KEY"
        ak, sk = environ.get(ak_var), environ.get(sk_var)
        if ak and sk:
            creds = {"aws_access_key_id": header_credential(ak_var, ak),
                     "aws_secret_access_key": header_credential(sk_var, sk)}
            if environ.get(token):
                creds["aws_session_token"] = header_credential(token, environ[token])
            return creds
    return {}


def make_client(location: S3Location, *, environ: Mapping[str, str], insecure: bool = False) -> Any:
    """A boto3 S3 client for ``location`` (thread-safe; one per store)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise UsageError(
            "the s3 state backend needs boto3: install the s3 extra "
            "(pip install 'keypair-reconciler[s3]', or pip install boto3)."
        ) from None
    endpoint = parsed_endpoint(location)
    region = resolve_region(location, environ)
    # boto3's default endpoint is AWS's; the proxy is chosen for its regional host.
    choice = choose_proxy(endpoint or Endpoint("https", f"s3.{region}.amazonaws.com"), environ)
    proxy_log.debug("state backend %s", choice.describe())
    config = Config(
        proxies=choice.proxies(),  # explicit, even when empty: botocore reads no environment
        s3={"addressing_style": addressing_style(location, environ)},
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=30,
        max_pool_connections=32,
        # S3-compatible stores (OBS, Ceph, older MinIO) refuse the newer default checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    static = _credentials(environ)
    session = (boto3.session.Session(**static) if static else _federated_session(environ)
               or boto3.session.Session())
    return session.client("s3", endpoint_url=endpoint.url if endpoint else None,
                          region_name=region, config=config, verify=not insecure)


def _federated_session(environ: Mapping[str, str]) -> Any:
    """A boto3 session over the OIDC provider of the environment, None without one."""
    from reconciler.credentials.chain import federated_provider

    provider = federated_provider(environ)
    if provider is None:
        return None
    import boto3
    from botocore.credentials import RefreshableCredentials
    from botocore.session import get_session

    def metadata() -> dict[str, str]:
        current = provider.current()
        until = datetime.fromtimestamp(provider.refresh_at(), UTC)
        token = current.security_token
        return {"access_key": current.ak, "secret_key": current.sk.reveal(),
                "token": token.reveal() if token else "", "expiry_time": until.isoformat()}

    # Told the provider's own refresh time as expiry, boto3 needs no margin of its own.
    credentials = RefreshableCredentials.create_from_metadata(
        metadata=metadata(), refresh_using=metadata, method="reconciler-oidc",
        advisory_timeout=0, mandatory_timeout=0)
    core = get_session()
    core._credentials = credentials
    return boto3.session.Session(botocore_session=core)


class Objects:
    """Get, put (conditionally), list and delete objects of one bucket."""

    def __init__(self, client: Any, *, bucket: str) -> None:
        self._client = client
        self.bucket = bucket

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag; ``None`` if there is none."""
        try:
            response = self._call(f"read s3://{self.bucket}/{key}",
                                  lambda: self._client.get_object(Bucket=self.bucket, Key=key))
        except _Missing:
            return None
        data = self._read_capped(response, what=f"s3://{self.bucket}/{key}")
        return data, str(response["ETag"])

    def _read_capped(self, response: Mapping[str, Any], *, what: str) -> bytes:
        """The object's body in chunks, refused past ``MAX_OBJECT_BYTES`` (declared or read):
        a hostile or broken store could otherwise fill the memory of every run."""
        body = response["Body"]
        declared = response.get("ContentLength")
        chunks: list[bytes] = []
        size = declared if isinstance(declared, int) and declared > MAX_OBJECT_BYTES else 0
        try:
            while size <= MAX_OBJECT_BYTES:
                amount = min(_CHUNK, MAX_OBJECT_BYTES + 1 - size)
                chunk = self._call(f"read {what}", partial(body.read, amount))
                if not chunk:
                    return b"".join(chunks)
                chunks.append(bytes(chunk))
                size += len(chunk)
        finally:
            body.close()
        raise StateError(
            f"cannot read {what}: the object is larger than {_mib(MAX_OBJECT_BYTES)}, far more "
            "than any state, journal or lock object reconciler writes; it was not read. Check "
            "that the bucket and key name reconciler's state, and restore the object from its "
            ".backup or a version of the bucket.")

    def head(self, key: str) -> str | None:
        """The object's ETag; ``None`` if there is none."""
        try:
            response = self._call(f"read s3://{self.bucket}/{key}",
                                  lambda: self._client.head_object(Bucket=self.bucket, Key=key))
        except _Missing:
            return None
        return str(response["ETag"])

    def put(self, key: str, data: bytes, *, if_match: str | None = None,
            if_none_match: bool = False) -> str:
        """Write; ``ConditionFailed`` if a condition does not hold. Returns the new ETag."""
        extra: dict[str, str] = {}
        if if_match is not None:
            extra["IfMatch"] = if_match
        if if_none_match:
            extra["IfNoneMatch"] = "*"
        try:
            response = self._call(
                f"write s3://{self.bucket}/{key}",
                lambda: self._client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                                ContentType="application/json", **extra))
        except _Missing:
            raise ConditionFailed(key) from None  # If-Match on an object that is gone
        return str(response["ETag"])

    def copy(self, source: str, target: str, *, if_match: str | None = None) -> None:
        extra = {"CopySourceIfMatch": if_match} if if_match is not None else {}
        try:
            self._call(f"copy s3://{self.bucket}/{source} to {target}",
                       lambda: self._client.copy_object(
                           Bucket=self.bucket, Key=target,
                           CopySource={"Bucket": self.bucket, "Key": source}, **extra))
        except _Missing:
            raise ConditionFailed(source) from None

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, all pages."""
        return list(self._iter_keys(prefix))

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call(f"list s3://{self.bucket}/{prefix}",
                              lambda extra=extra: self._client.list_objects_v2(  # type: ignore[misc]
                                  Bucket=self.bucket, Prefix=prefix, **extra))
            for item in page.get("Contents", ()):
                yield str(item["Key"])
            if not page.get("IsTruncated"):
                return
            token = str(page["NextContinuationToken"])

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        extra = {"IfMatch": if_match} if if_match is not None else {}
        try:
            self._call(f"delete s3://{self.bucket}/{key}",
                       lambda: self._client.delete_object(Bucket=self.bucket, Key=key, **extra))
        except _Missing:
            if if_match is not None:
                raise ConditionFailed(key) from None

    def delete_many(self, keys: list[str]) -> None:
        """Delete in batches of 1,000; one by one where the store lacks DeleteObjects."""
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            try:
                result = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            except Exception:  # e.g. a store wanting Content-MD5: fall back to single deletes
                result = {"Errors": [{"Key": k} for k in batch]}
            failed = [str(e["Key"]) for e in result.get("Errors", ())]
            if failed:
                with ThreadPoolExecutor(max_workers=16) as pool:
                    list(pool.map(self.delete, failed))

    def get_many(self, keys: list[str]) -> list[tuple[bytes, str] | None]:
        if len(keys) <= 1:
            return [self.get(k) for k in keys]
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(self.get, keys))

    def supports_conditional_writes(self, probe_key: str) -> bool:
        """Whether the store honours If-Match on PUT (and so If-None-Match, added earlier).

        A PUT to ``probe_key`` conditional on an ETag nothing has: a store that checks it
        answers 412 or 404; one that ignores it writes the object (removed again).
        """
        try:
            self.put(probe_key, b"{}", if_match=_NEVER_ETAG)
        except ConditionFailed:
            return True
        except StateError as exc:
            if getattr(exc, "code", "") in ("NotImplemented", "InvalidArgument", "InvalidRequest",
                                            "501", "400"):
                return False
            raise
        self.delete(probe_key)
        return False

    def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return fn()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _CONDITION_CODES or status == 412:
                raise ConditionFailed(what) from None
            if code in _MISSING_CODES or (status == 404 and code != "NoSuchBucket"):
                raise _Missing(what) from None
            raise _client_error(what, code=code, status=status,
                                message=str(error.get("Message", ""))) from None
        except NoCredentialsError:
            raise StateError(
                f"cannot {what}: no credentials for the state bucket. Set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or OBS_ACCESS_KEY_ID and OBS_SECRET_ACCESS_KEY)."
            ) from None
        except BotoCoreError as exc:
            raise StateError(
                f"cannot {what}: {exc}. Check --backend-endpoint and the network; nothing was "
                "changed by this request."
            ) from None


class _Missing(Exception):
    """404: no such object."""


class S3RequestError(StateError):
    """The object store refused a request; ``code`` is its error code."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


def _client_error(what: str, *, code: str, status: object, message: str) -> S3RequestError:
    hints = {
        "NoSuchBucket": "the bucket does not exist: create it first (reconciler never does)",
        "AccessDenied": "check the credentials and the bucket policy",
        "InvalidAccessKeyId": "check AWS_ACCESS_KEY_ID / OBS_ACCESS_KEY_ID",
        "SignatureDoesNotMatch": "check the secret key, and the region used for signing",
    }
    hint = hints.get(code, "check the endpoint, bucket and credentials")
    detail = f"{code or status}" + (f": {message}" if message else "")
    return S3RequestError(f"cannot {what} ({detail}); {hint}.", code=code or str(status))
