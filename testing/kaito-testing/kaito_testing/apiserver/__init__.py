"""An in-process Kubernetes API server emulator for tests and benchmarks (no etcd, no kube-apiserver).

What it does like the API server: resourceVersion (409 on a stale update), uid, generation,
creationTimestamp, generateName, 201 on create, label and field selectors, list chunking (limit and
continue), the status subresource isolated from the rest of the object, watch from a resourceVersion
(410 Gone once the history is compacted, BOOKMARKs), finalizers and deletionTimestamp, ownerReference
cascade (background garbage collection), discovery (/api, /apis, /apis/<group>/<version>), merge patch,
JSON patch, strategic merge patch (approximated: see ``patches``), PUT, CRDs (served as soon as they are
created, their openAPIV3Schema defaults and validation applied, printer columns used for the Table
format kubectl asks for) and ValidatingWebhookConfigurations with ``clientConfig.url``.

What it does not do: authentication beyond recording the bearer token as the user, authorization,
pruning of unknown fields, CEL rules (``x-kubernetes-validations``; tests check the ones that matter
by hand, e.g. tests/planning/test_nodeclaims.py for Karpenter's NodeClaim), conversion webhooks (served
versions differ only by apiVersion), server-side apply, namespace deletion cascade, controllers (no
Deployment creates Pods: tests play the controllers).
"""

from kaito_testing.apiserver.server import ApiServer, Call, Emulator, Fault
from kaito_testing.apiserver.store import ApiError, Store

__all__ = ["ApiError", "ApiServer", "Call", "Emulator", "Fault", "Store"]
