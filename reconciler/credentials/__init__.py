"""Credential providers: where the AK/SK (and security token) of a run come from.

A provider (``reconciler.api.protocol.CredentialProvider``) is asked for current credentials
before every signature; temporary ones are cached with their expiry and refreshed before it.
``chain.resolve_provider`` applies the official SDK's order of precedence (``chain`` says it);
``target.target_credentials`` gives a target of a manifest its own (a named profile, an agency
assumed with the base credentials), shared by every target that defines the same.

May import: the standard library, ``requests``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.credcheck``, ``reconciler.redact``, ``reconciler.textsafe``,
``reconciler.api.protocol``, ``reconciler.api.endpoints``, ``reconciler.api.signer``,
``reconciler.urls``, ``reconciler.proxies``, ``reconciler.fsutil``, ``reconciler.transport``.
"""
