"""Credential providers: where the AK/SK (and security token) of a run come from.

A provider (``reconciler.api.protocol.CredentialProvider``) is asked for current credentials
before every signature; temporary ones are cached with their expiry and refreshed before it.
``chain.resolve_provider`` applies the official SDK's order of precedence (``chain`` says it).

May import: the standard library, ``requests``, ``reconciler.model``, ``reconciler.errors``,
``reconciler.credcheck``, ``reconciler.redact``, ``reconciler.textsafe``,
``reconciler.api.protocol``, ``reconciler.api.endpoints``.
"""
