"""The e2e API server is a real kube-apiserver: objects the controller reads, lists, watches,
CRDs with schema validation, RBAC, ServiceAccount tokens."""
import json
import pathlib
import threading
import time

import pytest

NS = "limen-e2e"

OBJECTS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {NS}}}
spec:
  ports: [{{name: http, port: 80, targetPort: 8080, protocol: TCP}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-1
  namespace: {NS}
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
- addresses: ["10.244.0.10"]
  conditions: {{ready: true}}
- addresses: ["10.244.0.11"]
  conditions: {{ready: false}}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: limen}}
spec: {{controller: limen.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: echo, namespace: {NS}}}
spec:
  ingressClassName: limen
  rules:
  - host: echo.example.com
    http:
      paths:
      - path: /api
        pathType: Prefix
        backend: {{service: {{name: echo, port: {{number: 80}}}}}}
"""

INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ingressClassName: limen
  defaultBackend: {{service: {{name: echo, port: {{name: http}}}}}}
"""

# the product's own CRD (crds/), installed the way the e2e stack installs it
CRD = (pathlib.Path(__file__).resolve().parents[2] / "crds" / "limen.dev_plugins.yaml").read_text()

READER_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: limen-reader}
rules:
- apiGroups: [""]
  resources: [services, namespaces]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, ingressclasses]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses/status]
  verbs: [update, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: limen-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: limen-reader}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: limen-limited}
- {kind: ServiceAccount, name: limen-controller, namespace: %s}
""" % NS


@pytest.fixture(scope="module")
def objects(apiserver):
    apiserver.apply(OBJECTS)
    return apiserver


def test_readyz_and_version(apiserver):
    assert apiserver.kubectl("get", "--raw", "/readyz").stdout == "ok"
    status, body = apiserver.request("GET", "/version")
    assert status == 200 and body["gitVersion"] == "v1.36.3", body
    # the API server's own bootstrap objects exist: it is not a fake
    svc = apiserver.get_json("service", "kubernetes", "-n", "default")
    assert svc["spec"]["clusterIP"] == "10.0.0.1"
    status, body = apiserver.request("GET", "/readyz?verbose")
    assert status == 200 and "[+]etcd ok" in body, body


def test_objects_read_back_with_kubectl(objects):
    svc = objects.get_json("service", "echo", "-n", NS)
    assert "selector" not in svc["spec"]
    assert svc["spec"]["clusterIP"].startswith("10.0.0."), svc["spec"]  # allocated by the real allocator
    eps = objects.get_json("endpointslice", "echo-1", "-n", NS)
    assert [e["addresses"][0] for e in eps["endpoints"]] == ["10.244.0.10", "10.244.0.11"]
    assert [e["conditions"]["ready"] for e in eps["endpoints"]] == [True, False]
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "echo"
    ic = objects.get_json("ingressclass", "limen")
    assert ic["spec"]["controller"] == "limen.dev/ingress-controller"
    ing = objects.get_json("ingress", "echo", "-n", NS)
    path = ing["spec"]["rules"][0]["http"]["paths"][0]
    assert (ing["spec"]["ingressClassName"], path["path"], path["backend"]["service"]["name"]) == \
        ("limen", "/api", "echo")


def test_endpointslice_rejects_loopback(objects):
    """Real validation: e2e tests that proxy to local upstreams need a non-loopback address."""
    r = objects.kubectl("apply", "-f", "-", check=False, input=f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: echo-loopback, namespace: {NS}, labels: {{kubernetes.io/service-name: echo}}}}
addressType: IPv4
endpoints: [{{addresses: ["127.0.0.1"]}}]
""")
    assert r.returncode != 0 and "may not be in the loopback range" in r.stderr, r.stderr


def test_https_list_with_client_cert(objects):
    for path, name in [
        ("/apis/networking.k8s.io/v1/ingresses", "echo"),
        ("/apis/networking.k8s.io/v1/ingressclasses", "limen"),
        (f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
         "?labelSelector=kubernetes.io%2Fservice-name%3Decho", "echo-1"),
        (f"/api/v1/namespaces/{NS}/services", "echo"),
    ]:
        status, body = objects.request("GET", path)
        assert status == 200, body
        assert body["kind"].endswith("List") and int(body["metadata"]["resourceVersion"]) > 0
        assert name in [i["metadata"]["name"] for i in body["items"]], path
    # a validation error is a real Status object, 422
    status, body = objects.request("POST", f"/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses",
                                   {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                                    "metadata": {"name": "Bad_Name"}, "spec": {}})
    assert status == 422 and body["kind"] == "Status" and body["reason"] == "Invalid", body


def test_https_list_then_watch_receives_added(objects):
    status, lst = objects.request("GET", "/apis/networking.k8s.io/v1/ingresses?limit=500")
    assert status == 200
    rv = lst["metadata"]["resourceVersion"]
    conn = objects.connect(timeout=30)
    conn.request("GET", "/apis/networking.k8s.io/v1/ingresses?watch=1&allowWatchBookmarks=true"
                 f"&resourceVersion={rv}&timeoutSeconds=30", headers={"Accept": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    # create after the watch is established; the server sends the event when it is committed
    threading.Timer(0.5, objects.apply, [INGRESS.format(name="watched", ns=NS)]).start()
    deadline = time.monotonic() + 30
    event = None
    while time.monotonic() < deadline:
        line = resp.readline()
        if not line:
            break
        ev = json.loads(line)
        if ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "watched":
            event = ev
            break
    conn.close()
    assert event, "no ADDED event for ingress 'watched'"
    assert int(event["object"]["metadata"]["resourceVersion"]) > int(rv)
    assert event["object"]["spec"]["defaultBackend"]["service"]["port"]["name"] == "http"


def test_ingress_status_subresource(objects):
    objects.kubectl("patch", "ingress", "echo", "-n", NS, "--subresource=status", "--type=merge",
                    "-p", '{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}')
    ing = objects.get_json("ingress", "echo", "-n", NS)
    assert ing["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10"}]


def test_crd_and_custom_resource(objects):
    objects.apply(CRD)
    objects.kubectl("wait", "--for=condition=Established", "crd/plugins.limen.dev", "--timeout=30s")
    # discovery can lag the Established condition by a moment
    for _ in range(50):
        if objects.kubectl("get", "plugins.limen.dev", "-n", NS, check=False).returncode == 0:
            break
        time.sleep(0.2)
    objects.apply(f"""
apiVersion: limen.dev/v1
kind: Plugin
metadata: {{name: rate-limit, namespace: {NS}}}
spec:
  plugin: rate-limiting
  config: {{minute: 5, policy: local}}
""")
    status, body = objects.request("GET", f"/apis/limen.dev/v1/namespaces/{NS}/plugins")
    assert status == 200, body
    [item] = body["items"]
    assert item["spec"]["plugin"] == "rate-limiting"
    assert item["spec"]["config"] == {"minute": 5, "policy": "local"}
    # the structural schema is enforced by the server
    status, body = objects.request("POST", f"/apis/limen.dev/v1/namespaces/{NS}/plugins",
                                   {"apiVersion": "limen.dev/v1", "kind": "Plugin",
                                    "metadata": {"name": "bad"}, "spec": {"plugin": 42}})
    assert status == 422, body
    assert "spec.plugin" in body["message"], body
    r = objects.kubectl("get", "plugin", "rate-limit", "-n", NS, "-o", "jsonpath={.spec.plugin}")
    assert r.stdout == "rate-limiting"


def test_rbac_limited_client_cert(objects):
    objects.apply(READER_RBAC)
    # unbound operations are refused: 403 with a Status body, for secrets in any namespace
    status, body = objects.request("GET", f"/api/v1/namespaces/{NS}/secrets", user="limited")
    assert status == 403 and body["reason"] == "Forbidden", body
    assert 'User "limen-limited" cannot list resource "secrets"' in body["message"]
    status, _ = objects.request("GET", "/api/v1/secrets", user="limited")
    assert status == 403
    # what the ClusterRole grants works over HTTPS and through kubectl
    status, body = objects.request("GET", "/apis/networking.k8s.io/v1/ingresses", user="limited")
    assert status == 200 and body["items"], body
    limited = objects.dir / "limited.kubeconfig"
    assert objects.kubectl("get", "ingress", "-A", kubeconfig=limited).returncode == 0
    r = objects.kubectl("get", "secrets", "-n", NS, kubeconfig=limited, check=False)
    assert r.returncode != 0 and "Forbidden" in r.stderr, r.stderr
    assert objects.kubectl("auth", "can-i", "list", "secrets", "-A", kubeconfig=limited,
                           check=False).stdout.strip() == "no"


def test_serviceaccount_token(objects):
    """In a cluster the controller authenticates with its ServiceAccount's bearer token."""
    objects.apply(READER_RBAC)
    objects.kubectl("create", "serviceaccount", "limen-controller", "-n", NS, check=False)
    token = objects.kubectl("create", "token", "limen-controller", "-n", NS, "--duration=1h").stdout.strip()
    assert token.count(".") == 2  # a JWT signed with our service-account key
    status, body = objects.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                   {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                                   token=token)
    assert status == 201, body
    assert body["status"]["userInfo"]["username"] == f"system:serviceaccount:{NS}:limen-controller"
    status, body = objects.request("GET", "/apis/networking.k8s.io/v1/ingresses", token=token)
    assert status == 200 and body["items"], body
    status, body = objects.request("GET", f"/api/v1/namespaces/{NS}/secrets", token=token)
    assert status == 403, body
    status, _ = objects.request("GET", "/apis/networking.k8s.io/v1/ingresses", token="not-a-token")
    assert status == 401
    status, _ = objects.request("GET", "/apis/networking.k8s.io/v1/ingresses", user=None)
    assert status == 401  # --anonymous-auth=false
