"""The JSON plan, shaped like Terraform's so that tools reading that format work.

The document is the saved-plan format, which ``reconciler.planformat`` builds (owned by
``reconciler.planfile``): ``plan --format json`` shows exactly what ``plan --out FILE`` saves,
less where it applies. It never holds a private key, not even encrypted.

May import: ``reconciler.plan``, ``reconciler.planformat``.
"""

from __future__ import annotations

import json

from reconciler.plan import Plan
from reconciler.planformat import plan_document

__all__ = ["plan_document", "render_json"]


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=2, sort_keys=False) + "\n"
