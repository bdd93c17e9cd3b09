"""The CRDs in crds/ against a real kube-apiserver: they install, the `limen` category lists them,
manifests/ingressclass.yaml applies, and crds/examples/ holds what the schemas accept and reject.

valid-*.yaml must pass `kubectl apply --dry-run=server`; invalid-*.yaml must fail with the
substring given on their first line (`# expect: ...`) in kubectl's stderr. Dry runs leave no
objects behind, so the module neither depends on nor changes other modules' state."""
import pathlib
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))
EXAMPLES = ROOT / "crds" / "examples"
VALID = sorted(EXAMPLES.glob("valid-*.yaml"))
INVALID = sorted(EXAMPLES.glob("invalid-*.yaml"))
NS = "crd-examples"
KINDS = {"plugins.limen.dev", "clusterplugins.limen.dev", "consumers.limen.dev",
         "upstreampolicies.limen.dev"}


def crd_name(path):
    return next(line.split(":", 1)[1].strip() for line in path.read_text().splitlines()
                if line.strip().startswith("name:"))


@pytest.fixture(scope="module")
def api(apiserver):
    for crd in CRDS:
        apiserver.kubectl("apply", "-f", str(crd))
    for crd in CRDS:
        apiserver.kubectl("wait", "--for=condition=Established", "--timeout=30s", f"crd/{crd_name(crd)}")
    apiserver.kubectl("apply", "-f", str(ROOT / "manifests" / "ingressclass.yaml"))
    apiserver.apply(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n")
    return apiserver


def test_crds_dir_holds_only_our_crds():
    # other modules (stack.py) apply crds/*.yaml and wait for Established on each
    assert {crd_name(p) for p in CRDS} == KINDS
    for p in CRDS:
        assert "kind: CustomResourceDefinition" in p.read_text(), p


def test_category_and_ingressclass(api):
    for name in KINDS:
        crd = api.get_json(f"crd/{name}")
        assert crd["spec"]["names"]["categories"] == ["limen"], name
    ic = api.get_json("ingressclass/limen")
    assert ic["spec"]["controller"] == "limen.dev/ingress-controller"
    assert ic["metadata"].get("annotations", {}).get("ingressclass.kubernetes.io/is-default-class") != "true"
    # the API server publishes new CRDs in discovery a moment after Established
    deadline = time.monotonic() + 15
    while True:
        r = api.kubectl("get", "limen", "-A", check=False)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert r.returncode == 0, r.stderr
    r = api.kubectl("api-resources", "--categories=limen", "-o", "name")
    assert set(r.stdout.split()) == KINDS, r.stdout

def test_examples_exist():
    kinds = {p.name for p in VALID}
    assert {"valid-plugin.yaml", "valid-clusterplugin.yaml", "valid-consumer.yaml",
            "valid-upstreampolicy.yaml"} <= kinds
    assert len(INVALID) >= 5


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example(api, path):
    r = api.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    assert r.returncode == 0, f"{path.name}:\n{r.stdout}\n{r.stderr}"
    assert "(server dry run)" in r.stdout


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example(api, path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: <substring>'"
    expect = first.removeprefix("# expect: ").strip()
    assert expect
    r = api.kubectl("apply", "--dry-run=server", "-f", str(path), check=False)
    assert r.returncode != 0, f"{path.name} was accepted:\n{r.stdout}"
    assert expect in r.stderr, f"{path.name}: {expect!r} not in:\n{r.stderr}"
