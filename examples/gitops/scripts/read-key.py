#!/usr/bin/env python3
"""Read ONE private key that reconciler delivered to CSMS, and write it to a 0600 file.

    python3 scripts/read-key.py SECRET_NAME FILE

The consumer's own credentials (an IAM user or agency whose policy grants reading this one
secret: iam/deploy-key-reader.json) come from HUAWEICLOUD_SDK_AK / HUAWEICLOUD_SDK_SK and
HUAWEICLOUD_SDK_PROJECT_ID; CSMS_ENDPOINT is the service's host (default: the region's,
https://kms.{HUAWEICLOUD_REGION}.myhuaweicloud.com). It reads the SYSCURRENT stage, then that
version, as reconciler's delivery makes the newest key SYSCURRENT. The key is never printed:
FILE is created new (never over an existing file or through a link), mode 0600. Needs the
official SDK: pip install huaweicloudsdkcsms==3.1.219.
"""

import os
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import SdkException
from huaweicloudsdkcsms.v1 import (
    CsmsClient,
    ShowSecretStageRequest,
    ShowSecretVersionRequest,
)


def _need(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"read-key: {name} is not set")
    return value


def main(secret: str, path: str) -> int:
    region = os.environ.get("HUAWEICLOUD_REGION", "cn-north-4")
    endpoint = os.environ.get("CSMS_ENDPOINT") or f"https://kms.{region}.myhuaweicloud.com"
    credentials = BasicCredentials(_need("HUAWEICLOUD_SDK_AK"), _need("HUAWEICLOUD_SDK_SK"),
                                   _need("HUAWEICLOUD_SDK_PROJECT_ID"))
    client = (CsmsClient.new_builder().with_credentials(credentials)
              .with_endpoints([endpoint]).build())
    try:
        stage = client.show_secret_stage(ShowSecretStageRequest(secret_name=secret,
                                                                stage_name="SYSCURRENT"))
        version = client.show_secret_version(ShowSecretVersionRequest(
            secret_name=secret, version_id=stage.stage.version_id))
    except SdkException as exc:  # its message never holds the value
        sys.exit(f"read-key: CSMS refused reading {secret}: {exc.error_code} {exc.error_msg}")
    key = version.version.secret_string
    if not key or "PRIVATE KEY-----" not in key:
        sys.exit(f"read-key: the current version of {secret} holds no private key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key if key.endswith("\n") else key + "\n")
    print(f"read-key: wrote the current version ({stage.stage.version_id}) of {secret} "
          f"to {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: read-key.py SECRET_NAME FILE")
    sys.exit(main(sys.argv[1], sys.argv[2]))
