"""The Huawei key pair APIs: signer, HTTP client, and the v2 / v2.1 / kps adapters."""
