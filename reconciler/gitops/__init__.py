"""What CI runs around reconciler: the change-set check that guards apply on merge, and the
calls to the GitHub and GitLab REST APIs (the one plan comment, the one drift issue, the plan
that was reviewed), run as ``python -m reconciler.gitops.MODULE`` by ``action.yml`` and the
GitLab component.

Standard library only, and nothing of reconciler: these modules read a plan only through its
JSON document, so they keep working whatever the engine's internals become.
May import: the standard library.
"""
