"""A spec.podTemplate that sets every field: the unit, CRD and operator tests share it."""

from __future__ import annotations

from typing import Any

#: Names that must exist for real Pods (ServiceAccount, PriorityClass) are created by the e2e
#: test that runs it; the Secrets and ConfigMaps need not exist for a Deployment to be applied.
TEMPLATE: dict[str, Any] = {
    "metadata": {
        "labels": {"team": "risk", "sidecar.istio.io/inject": "false"},
        "annotations": {"vault.hashicorp.com/agent-inject": "true"},
    },
    "imagePullSecrets": [{"name": "registry-creds"}],
    "serviceAccountName": "finex-worker",
    "automountServiceAccountToken": True,
    "priorityClassName": "batch-high",
    "nodeSelector": {"node.kubernetes.io/pool": "workers"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "finex", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }
                ]
            }
        }
    },
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
        }
    ],
    "env": [{"name": "SSL_CERT_FILE", "value": "/etc/finex/ca/ca.crt"}],
    "envFrom": [{"secretRef": {"name": "finex-extra"}}],
    "volumes": [{"name": "ca", "secret": {"secretName": "finex-ca"}}],
    "volumeMounts": [{"name": "ca", "mountPath": "/etc/finex/ca", "readOnly": True}],
}
