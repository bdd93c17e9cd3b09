"""The Helm chart (charts/limen) rendered with the Helm binary tools/helm-env.sh builds into build/helm.

stack.py takes the e2e controller's ServiceAccount and RBAC from render(); test_chart.py lints and
renders the chart for a matrix of values."""
import json
import pathlib
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "limen"
HELM = ROOT / "build" / "helm" / "helm"
RELEASE, NAMESPACE = "limen", "limen-system"
_built = False


def helm_bin():
    """build/helm/helm, built (or found up to date) once per process."""
    global _built
    if not _built:
        r = subprocess.run([str(ROOT / "tools" / "helm-env.sh"), "build"], capture_output=True, text=True,
                           timeout=1800)
        if r.returncode != 0:
            raise AssertionError(f"tools/helm-env.sh build failed:\n{r.stdout}\n{r.stderr}")
        _built = True
    return str(HELM)


def helm(*args, check=True):
    r = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: rc={r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def values_args(values):
    """-f with the values as a JSON file (JSON is YAML), or nothing."""
    if not values:
        return []
    f = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="limen-values-", delete=False)
    json.dump(values, f)
    f.close()
    return ["-f", f.name]


def render(values=None, release=RELEASE, namespace=NAMESPACE, show_only=(), include_crds=False, check=True):
    """`helm template`: the manifests as one multi-document YAML string (or the result when check=False)."""
    args = ["template", release, str(CHART), "--namespace", namespace, *values_args(values)]
    for s in show_only:
        args += ["--show-only", s]
    if include_crds:
        args.append("--include-crds")
    r = helm(*args, check=check)
    return r.stdout if check else r


def controller_rbac():
    """The controller's ServiceAccount, ClusterRole/Roles and bindings, as the chart renders them by
    default (release limen in limen-system)."""
    return render(show_only=("templates/serviceaccount.yaml", "templates/rbac.yaml"))
