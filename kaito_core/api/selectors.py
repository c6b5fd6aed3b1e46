"""``resource.labelSelector`` as KAITO reads it: plain labels, some of them reserved.

KAITO turns the selector into plain labels (``metav1.LabelSelectorAsMap``): ``matchLabels`` plus
``matchExpressions`` that are ``In`` with exactly one value. The labels it puts on its own nodes
(the Workspace's name and namespace, Karpenter's NodePool keys) are reserved: a selector of only
those would select another Workspace's nodes.
"""

from __future__ import annotations

from kaito_core.api.models import LabelSelector
from kaito_core.api.names import RESERVED_SELECTOR_LABELS as RESERVED_SELECTOR_LABELS


class SelectorError(ValueError):
    """The selector cannot be written as plain labels (the text is apimachinery's)."""


def selector_as_map(selector: LabelSelector) -> dict[str, str]:
    """The selector's labels, as ``metav1.LabelSelectorAsMap`` makes them; raises SelectorError."""
    labels = dict(selector.match_labels)
    for requirement in selector.match_expressions:
        if requirement.operator == "In":
            if len(requirement.values) != 1:
                raise SelectorError('operator "In" without a single value cannot be converted into the '
                                    "old label selector format")
            labels[requirement.key] = requirement.values[0]
        else:
            raise SelectorError(f'operator "{requirement.operator}" cannot be converted into the old '
                                "label selector format")
    return labels


def sanitized_labels(labels: dict[str, str]) -> dict[str, str]:
    """``labels`` without the reserved keys (KAITO's SanitizedMatchLabels)."""
    return {k: v for k, v in labels.items() if k not in RESERVED_SELECTOR_LABELS}
