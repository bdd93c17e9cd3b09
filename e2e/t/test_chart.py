"""The Helm chart (charts/limen) and the manifests generated from it, against the real API server.

For each entry of a matrix of values: `helm lint --strict`, one `helm template`, and the whole render
applied with `kubectl apply --dry-run=server` (CRDs installed, namespaces created, a minimal
ServiceMonitor CRD for the monitoring entry) in a namespace that warns on anything the `restricted`
Pod Security Standard forbids, so a weaker security context fails. Also: values.schema.json and the
chart's own checks reject wrong values with a clear message; every flag the chart passes is one the
binaries accept; the Role variant (watchNamespaces) grants what it should and nothing more, checked with
`kubectl auth can-i`; the chart's CRDs are copies of crds/; manifests/ is what `make manifests` renders."""
import json
import os
import pathlib
import subprocess
import tempfile
import time

import pytest

from chart import CHART, NAMESPACE, ROOT, helm, render, values_args
from stack import CTL_BIN, DP_BIN

NS = "chart-test"  # release namespace of the matrix
TEAMS = ["chart-team-a", "chart-team-b"]

SERVICE_MONITOR_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

# id -> values; each is linted, rendered and applied once
MATRIX = {
    "sidecar-default": {},
    "split-deployment": {"deployment": {"shape": "split"},
                         "controller": {"replicas": 2, "podDisruptionBudget": {"enabled": True}}},
    "split-daemonset": {"deployment": {"shape": "split"}, "dataplane": {"kind": "DaemonSet"},
                        "service": {"type": "NodePort", "http": {"nodePort": 30080}},
                        "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": None}},
    "watch-namespaces-sidecar": {"watchNamespaces": TEAMS + [NS]},
    "watch-namespaces-split": {"deployment": {"shape": "split"}, "watchNamespaces": TEAMS},
    "service-clusterip-no-https": {"service": {"type": "ClusterIP", "https": {"enabled": False}}},
    "service-loadbalancer-local": {"service": {
        "type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerSourceRanges": ["10.0.0.0/8"],
        "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"},
        "https": {"enabled": True, "nodePort": 30443}}},
    "pdb-hpa": {"podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": None},
                "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5,
                                "targetMemoryUtilizationPercentage": 75}},
    "servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}},
    "ingressclass-default": {"ingressClass": {"default": True}},
    "everything-else": {
        "deployment": {"shape": "split"},
        "image": {"repository": "registry.example.com/limen", "digest": "sha256:" + "ab" * 32,
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "controller": {"logLevel": "debug", "election": {"enabled": False}, "updateStatus": False,
                       "publishStatusAddresses": ["203.0.113.7"], "extraArgs": ["--debounce", "250"],
                       "extraEnv": [{"name": "LIMEN_LOG_LEVEL", "value": "debug"}]},
        "dataplane": {"workers": 2, "accessLog": True, "latencyHeaders": False, "trustedIPs": ["10.0.0.0/8"],
                      "realIPHeader": "X-Forwarded-For", "adminToken": {"existingSecret": "my-admin-token"},
                      "extraEnv": [{"name": "TZ", "value": "UTC"}], "preStopSleepSeconds": 0},
        "serviceAccount": {"annotations": {"example.com/role": "limen"}},
        "podAntiAffinity": "hard", "topologySpread": {"enabled": False},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ingress", "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/a": "b"}, "podLabels": {"team": "edge"},
        "priorityClassName": "", "terminationGracePeriodSeconds": 60,
    },
}


@pytest.fixture(scope="module")
def api(apiserver):
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        apiserver.kubectl("apply", "-f", str(crd))
    apiserver.apply(SERVICE_MONITOR_CRD)
    apiserver.kubectl("wait", "--for=condition=Established", "--timeout=30s",
                      "crd/servicemonitors.monitoring.coreos.com", "crd/plugins.limen.dev")
    labels = ("labels: {pod-security.kubernetes.io/enforce: restricted, "
              "pod-security.kubernetes.io/warn: restricted}")
    for ns in [NS, NAMESPACE, *TEAMS]:
        apiserver.apply(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  {labels}\n")
    # the API server publishes a new CRD in discovery a moment after Established
    deadline = time.monotonic() + 15
    while apiserver.kubectl("get", "servicemonitors", "-A", check=False).returncode != 0:
        assert time.monotonic() < deadline, "ServiceMonitor CRD not served"
        time.sleep(0.3)
    return apiserver


def dry_run(api, manifest):
    """kubectl apply --dry-run=server of a multi-document manifest: the objects as the API server
    would store them. Fails on any error and on any Pod Security warning."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="limen-chart-", delete=False) as f:
        f.write(manifest)
    try:
        r = api.kubectl("apply", "--dry-run=server", "-o", "json", "-f", f.name, check=False)
    finally:
        os.unlink(f.name)
    assert r.returncode == 0, f"rejected by the API server:\n{r.stderr}"
    assert "violate PodSecurity" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    return out["items"] if out.get("kind") == "List" else [out]


def find(objs, kind, name=None):
    got = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert got, f"no {kind} {name or ''} in {[(o['kind'], o['metadata']['name']) for o in objs]}"
    return got[0]


def containers(objs):
    """name -> container, over every workload."""
    out = {}
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                out[c["name"]] = c
    return out


def args_of(c):
    return c.get("args", [])


def flag(c, name):
    a = args_of(c)
    return [a[i + 1] for i, x in enumerate(a[:-1]) if x == name]


# ---- the matrix -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rendered(api):
    """id -> (values, objects from the server dry run): one lint, template and apply per entry."""
    out = {}
    for id_, values in MATRIX.items():
        r = helm("lint", str(CHART), "--strict", "--namespace", NS, *values_args(values), check=False)
        assert r.returncode == 0, f"{id_}: helm lint:\n{r.stdout}\n{r.stderr}"
        out[id_] = (values, dry_run(api, render(values, namespace=NS)))
    return out


@pytest.mark.parametrize("id_", list(MATRIX))
def test_matrix_entry(rendered, id_):
    values, objs = rendered[id_]
    kinds = {o["kind"] for o in objs}
    split = values.get("deployment", {}).get("shape") == "split"
    cs = containers(objs)
    assert "dataplane" in cs and "controller" in cs
    dp, ctl = cs["dataplane"], cs["controller"]
    # hardening, on every container and pod
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet"):
            pod = o["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            assert pod["automountServiceAccountToken"] is False
            for c in pod["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert c["readinessProbe"]["httpGet"]["path"] in ("/status", "/readyz")
                assert c["livenessProbe"]["httpGet"]["path"] in ("/status", "/healthz")
                assert c["resources"]["requests"]
    # the proxy Service: ports 80 (and 443) onto the data plane's listeners
    svc = find(objs, "Service", "limen")
    assert svc["spec"]["type"] == values.get("service", {}).get("type", "LoadBalancer")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["http"]["port"] == 80 and ports["http"]["targetPort"] == "proxy-http"
    https = values.get("service", {}).get("https", {}).get("enabled", True)
    assert ("https" in ports) == https
    if https:
        assert ports["https"]["port"] == 443
        assert "0.0.0.0:8443 ssl http2" in flag(dp, "--proxy-listen")  # TLS terminated there, h2 by ALPN
    assert "0.0.0.0:8000" in flag(dp, "--proxy-listen")
    assert flag(dp, "--status-listen") == ["0.0.0.0:8100"]
    assert "--managed" in args_of(dp)
    # the two shapes: a unix socket in a shared emptyDir, or a token over TCP through the admin Service
    if split:
        assert find(objs, "Deployment", "limen-controller")
        workload = find(objs, values.get("dataplane", {}).get("kind", "Deployment"), "limen")
        assert len(workload["spec"]["template"]["spec"]["containers"]) == 1
        assert flag(ctl, "--dataplane-service") == [f"{NS}/limen-admin"] and flag(ctl, "--dataplane-port") == ["admin"]
        admin = find(objs, "Service", "limen-admin")
        assert admin["spec"]["clusterIP"] == "None" and admin["spec"]["ports"][0]["name"] == "admin"
        assert flag(dp, "--admin-listen") == ["0.0.0.0:8001"]
        secret = values.get("dataplane", {}).get("adminToken", {}).get("existingSecret") or "limen-admin-token"
        for c, env in ((ctl, "LIMEN_DATAPLANE_TOKEN"), (dp, "LIMEN_ADMIN_TOKEN")):
            e = next(e for e in c["env"] if e["name"] == env)
            assert e["valueFrom"]["secretKeyRef"]["name"] == secret
        assert ("Secret" in kinds) == (secret == "limen-admin-token")
        assert find(objs, "ServiceAccount", "limen-dataplane")["automountServiceAccountToken"] is False
    else:
        pod = find(objs, "Deployment", "limen")["spec"]["template"]["spec"]
        assert [c["name"] for c in pod["containers"]] == ["dataplane", "controller"]
        assert flag(dp, "--admin-listen") == ["unix:/var/run/limen/admin.sock"]
        assert flag(ctl, "--dataplane") == ["unix:/var/run/limen/admin.sock"]
        assert {"name": "run", "emptyDir": {}} in pod["volumes"]
        assert "Secret" not in kinds
    # the token only in the controller container
    mounts = lambda c: {m["mountPath"] for m in c.get("volumeMounts", [])}  # noqa: E731
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts(ctl)
    assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts(dp)
    # RBAC: a ClusterRole, plus Roles when watchNamespaces is set
    watch = values.get("watchNamespaces", [])
    assert sorted(flag(ctl, "--watch-namespace")) == sorted(watch)
    roles = {o["metadata"]["namespace"] for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "limen-controller"}
    if watch:
        expect = set(watch) | {"default"} | ({NS} if split else set())
        assert roles == expect
        cr = find(objs, "ClusterRole", "limen-controller")
        assert {r for rule in cr["rules"] for r in rule["resources"]} == {
            "ingressclasses", "clusterplugins", "clusterplugins/status"}
    else:
        assert not roles
    election = values.get("controller", {}).get("election", {}).get("enabled", True)
    assert any(o["kind"] == "Role" and o["metadata"]["name"] == "limen-controller-leader" for o in objs) == election
    # Ingress status: the proxy Service when the controller can see it
    if values.get("controller", {}).get("publishStatusAddresses"):
        assert flag(ctl, "--publish-status-address") == values["controller"]["publishStatusAddresses"]
    elif not watch or NS in watch:
        assert flag(ctl, "--publish-service") == [f"{NS}/limen"]
    else:
        assert not flag(ctl, "--publish-service")
    # the optional objects
    assert ("PodDisruptionBudget" in kinds) == bool(values.get("podDisruptionBudget", {}).get("enabled")
                                                    or values.get("controller", {}).get("podDisruptionBudget"))
    assert ("HorizontalPodAutoscaler" in kinds) == bool(values.get("autoscaling", {}).get("enabled"))
    assert ("ServiceMonitor" in kinds) == bool(values.get("metrics", {}).get("serviceMonitor", {}).get("enabled"))
    ic = find(objs, "IngressClass", "limen")
    assert ic["spec"]["controller"] == "limen.dev/ingress-controller"
    default = ic["metadata"].get("annotations", {}).get("ingressclass.kubernetes.io/is-default-class")
    assert (default == "true") == bool(values.get("ingressClass", {}).get("default"))


def test_matrix_details(rendered):
    """A few values that must reach the right field."""
    values, objs = rendered["pdb-hpa"]
    # the HPA owns the replica count (the API server defaults it to 1 on creation only)
    assert "\n  replicas:" not in render(values, namespace=NS, show_only=("templates/deployment.yaml",))
    assert "\n  replicas: 1\n" in render(namespace=NS, show_only=("templates/deployment.yaml",))
    hpa = find(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "limen"}
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert find(objs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1

    _, objs = rendered["split-daemonset"]
    assert find(objs, "Service", "limen")["spec"]["ports"][0]["nodePort"] == 30080
    assert "affinity" not in find(objs, "DaemonSet", "limen")["spec"]["template"]["spec"]

    _, objs = rendered["service-loadbalancer-local"]
    spec = find(objs, "Service", "limen")["spec"]
    assert spec["externalTrafficPolicy"] == "Local" and spec["loadBalancerSourceRanges"] == ["10.0.0.0/8"]

    _, objs = rendered["servicemonitor"]
    sm = find(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert {e["port"] for e in sm["spec"]["endpoints"]} == {"dp-metrics", "ctl-metrics"}
    metrics = find(objs, "Service", "limen-metrics")
    assert all(sm["spec"]["selector"]["matchLabels"][k] == v for k, v in metrics["metadata"]["labels"].items()
               if k in sm["spec"]["selector"]["matchLabels"])

    _, objs = rendered["everything-else"]
    cs = containers(objs)
    assert cs["controller"]["image"] == "registry.example.com/limen@sha256:" + "ab" * 32
    assert flag(cs["dataplane"], "--trusted-ips") == ["10.0.0.0/8"]
    assert flag(cs["dataplane"], "--access-log") == ["/dev/stdout"]
    assert "--no-latency-headers" in args_of(cs["dataplane"])
    assert args_of(cs["controller"])[-2:] == ["--debounce", "250"]
    assert {"name": "TZ", "value": "UTC"} in cs["dataplane"]["env"]
    pod = find(objs, "Deployment", "limen-controller")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert pod["tolerations"][0]["value"] == "ingress" and pod["terminationGracePeriodSeconds"] == 60


def test_chart_flags_are_real():
    """Every flag the chart passes, in both shapes, is in the binary's --help."""
    helps = {}
    for name, binary in (("controller", CTL_BIN), ("dataplane", DP_BIN)):
        r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        helps[name] = r.stdout
    for values in (MATRIX["sidecar-default"], MATRIX["everything-else"], MATRIX["watch-namespaces-split"]):
        text = render(values)
        for name in ("controller", "dataplane"):
            exe = f"/usr/local/bin/limen-{name}"
            assert exe in text
        # flags are list items "- --flag" in the rendered args
        flags = {line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- --")}
        assert flags
        for f in flags:
            assert any(f"{f} " in h or f"{f}," in h or f"{f}\n" in h for h in helps.values()), f"unknown flag {f}"


# ---- wrong values ----------------------------------------------------------------------------------

REJECTED = [
    (["deployment.shape=bogus"], "at '/deployment/shape': value must be one of 'sidecar', 'split'"),
    (["dataplane.replicas=-1"], "at '/dataplane/replicas': minimum: got -1, want 0"),
    (["service.type=Foo"], "at '/service/type': value must be one of 'LoadBalancer', 'NodePort', 'ClusterIP'"),
    (["dataplane.kind=StatefulSet"], "at '/dataplane/kind': value must be one of 'Deployment', 'DaemonSet'"),
    (["controller.logLevel=verbose"], "at '/controller/logLevel': value must be one of"),
    (["service.http.port=70000"], "at '/service/http/port': maximum"),
    (["dataplane.httpPort=80"], "at '/dataplane/httpPort': minimum"),
    (["--set-string", "controller.replicas=two"], "at '/controller/replicas': got string, want integer"),
    (["controller.bogus=1"], "at '/controller': additional properties 'bogus' not allowed"),
    (["watchNamespaces[0]=Bad_NS"], "at '/watchNamespaces/0': 'Bad_NS' does not match pattern"),
    (["image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of"),
    (["podAntiAffinity=maybe"], "at '/podAntiAffinity': value must be one of 'soft', 'hard', 'none'"),
    # the chart's own checks across values
    (["deployment.shape=split", "dataplane.kind=DaemonSet", "autoscaling.enabled=true"],
     "a HorizontalPodAutoscaler cannot scale a DaemonSet"),
    (["dataplane.drainTimeoutMs=60000"], "must end before terminationGracePeriodSeconds"),
    (["podDisruptionBudget.enabled=true", "podDisruptionBudget.minAvailable=1"], "not both"),
    (["autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=2"],
     "autoscaling.maxReplicas must be at least autoscaling.minReplicas"),
    (["serviceAccount.create=false"], "serviceAccount.name is required"),
    (["deployment.shape=split", "dataplane.kind=DaemonSet", "podDisruptionBudget.enabled=true"],
     "only an integer minAvailable works"),
    (["controller.port=8100"], "must differ"),
    (["service.http.enabled=false", "service.https.enabled=false"], "service: enable http, https or both"),
]


def set_args(items):
    out, i = [], 0
    while i < len(items):
        if items[i].startswith("--"):
            out += [items[i], items[i + 1]]
            i += 2
        else:
            out += ["--set", items[i]]
            i += 1
    return out


@pytest.mark.parametrize("sets,expect", REJECTED, ids=[" ".join(s) for s, _ in REJECTED])
def test_wrong_values_rejected(sets, expect):
    r = helm("template", "limen", str(CHART), *set_args(sets), check=False)
    assert r.returncode != 0, f"{sets} accepted"
    assert expect in r.stderr, f"{expect!r} not in:\n{r.stderr}"


def test_lint_rejects_wrong_values():
    r = helm("lint", str(CHART), "--strict", "--set", "deployment.shape=bogus", check=False)
    assert r.returncode != 0 and "value must be one of 'sidecar', 'split'" in r.stdout + r.stderr


# ---- RBAC: the Role variant, for real --------------------------------------------------------------

def test_rbac_watch_namespaces_can_i(api):
    """Release `scoped` in chart-test, split shape, watchNamespaces [chart-team-a], applied for real: its
    ServiceAccount reads and writes status in that namespace only, still reads IngressClasses and
    ClusterPlugins, never writes a Secret. (The default, cluster-wide variant is what every controller
    test runs with: stack.py.)"""
    values = {"watchNamespaces": [TEAMS[0]], "deployment": {"shape": "split"}}
    manifest = render(values, release="scoped", namespace=NS,
                      show_only=("templates/serviceaccount.yaml", "templates/rbac.yaml"))
    sa = f"system:serviceaccount:{NS}:scoped-limen-controller"

    def can(verb, resource, ns=None, sub=None):
        args = ["auth", "can-i", verb, resource, "--as", sa, *(["-n", ns] if ns else ["-A"])]
        if sub:
            args += ["--subresource", sub]
        return api.kubectl(*args, check=False).stdout.strip() == "yes"

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(manifest)
    try:
        api.kubectl("apply", "-f", f.name)
        team, other = TEAMS
        for verb in ("get", "list", "watch"):
            for res in ("ingresses.networking.k8s.io", "services", "secrets", "endpointslices.discovery.k8s.io",
                        "plugins.limen.dev", "consumers.limen.dev", "upstreampolicies.limen.dev"):
                assert can(verb, res, team), (verb, res)
                assert not can(verb, res, other), (verb, res)
                assert not can(verb, res), (verb, res, "cluster-wide")
            for res in ("ingressclasses.networking.k8s.io", "clusterplugins.limen.dev"):
                assert can(verb, res), (verb, res)
        assert can("patch", "ingresses.networking.k8s.io", team, sub="status")
        assert can("patch", "consumers.limen.dev", team, sub="status")
        assert can("patch", "clusterplugins.limen.dev", sub="status")
        assert can("create", "events", team) and not can("create", "events", other)
        assert can("create", "events", "default")  # Events on ClusterPlugins go there
        assert can("list", "endpointslices.discovery.k8s.io", NS)  # finding the data planes (split)
        assert not can("list", "services", NS)
        assert can("create", "leases.coordination.k8s.io", NS)
        assert not can("list", "leases.coordination.k8s.io", NS)
        for verb, res in (("create", "secrets"), ("update", "ingresses.networking.k8s.io"),
                          ("delete", "services"), ("patch", "ingresses.networking.k8s.io")):
            assert not can(verb, res, team), (verb, res)
    finally:
        api.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", f.name, check=False)
        os.unlink(f.name)


# ---- generated files ---------------------------------------------------------------------------------

def test_chart_crds_are_copies():
    """charts/limen/crds/ holds exactly crds/*.yaml, byte for byte (`make manifests` copies them)."""
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*")}
    assert chart.keys() == ours.keys()
    for name in ours:
        assert chart[name] == ours[name], f"charts/limen/crds/{name} differs from crds/{name}: run make manifests"


def test_manifests_up_to_date(tmp_path):
    r = subprocess.run([str(ROOT / "tools" / "manifests.sh"), "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in ("all-in-one.yaml", "rbac.yaml"):
        fresh = (tmp_path / name).read_text()
        assert fresh.startswith("# GENERATED by `make manifests`")
        assert (ROOT / "manifests" / name).read_text() == fresh, f"manifests/{name} is stale: run make manifests"


def test_all_in_one_applies(api):
    objs = dry_run(api, (ROOT / "manifests" / "all-in-one.yaml").read_text())
    kinds = [o["kind"] for o in objs]
    assert kinds.count("CustomResourceDefinition") == 4
    assert {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service",
            "Deployment", "IngressClass"} <= set(kinds)
    assert all(o["metadata"].get("namespace", NAMESPACE) == NAMESPACE for o in objs)


def test_ingressclass_manifest_is_the_charts(api):
    chart_ic = find(dry_run(api, render(show_only=("templates/ingressclass.yaml",))), "IngressClass")
    ic = find(dry_run(api, (ROOT / "manifests" / "ingressclass.yaml").read_text()), "IngressClass")
    assert ic["metadata"]["name"] == chart_ic["metadata"]["name"] and ic["spec"] == chart_ic["spec"]


def test_chart_metadata():
    text = (CHART / "Chart.yaml").read_text()
    assert "apiVersion: v2" in text
    version = next(l.split('"')[1] for l in (ROOT / "common" / "lm_core.h").read_text().splitlines()
                   if l.startswith("#define LM_VERSION"))
    assert f'appVersion: "{version}"' in text, "Chart.yaml appVersion must be LM_VERSION"
    json.loads((CHART / "values.schema.json").read_text())


@pytest.mark.parametrize("shape", ["sidecar", "split"])
def test_notes(api, shape):
    """NOTES.txt (printed by helm install): how to reach the proxy and a first request. (A dry-run
    install still looks for objects it would take over: a release and IngressClass of their own.)"""
    r = helm("install", "notes", str(CHART), "--dry-run=client", "--namespace", NS,
             "--kubeconfig", str(api.kubeconfig), "--set", f"deployment.shape={shape}",
             "--set", "ingressClass.name=chart-notes")
    notes = r.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NS} get service notes-limen" in notes
    assert "--class=chart-notes" in notes
    assert "curl -i -H 'Host: echo.example.com' http://$LIMEN/" in notes
    ctl = "deployment/notes-limen-controller" if shape == "split" else "deployment/notes-limen"
    assert f"port-forward {ctl} 10254" in notes
