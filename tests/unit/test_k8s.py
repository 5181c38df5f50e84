"""The Kubernetes manifests (k8s/), checked without a cluster.

`kubectl kustomize` renders each overlay; every standard resource is validated against the
Kubernetes schema (package kubernetes-validate, strict: unknown fields fail), the RayService
and RayJob against KubeRay's CRD schemas kept in tests/fixtures/kuberay-crds (strict too);
then what the deployment promises: the Serve config is services/gateway/serve.yaml, probes hit the
gateway, every container has requests and limits, PDBs cover the Ray pods, GPUs in prod,
a valid re-index schedule, and the re-index script does what it says (against a fake kubectl).
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FIXTURES, ROOT, require

K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
CRDS = FIXTURES / "kuberay-crds"
KUBECTL = shutil.which("kubectl")
# The oldest Kubernetes the manifests must be valid for.
K8S_VERSION = "1.30.0"
K8S_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
SERVE_PORT = 8000


def _load_generate():
    """k8s/generate.py, which is a script, not a package module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


generate = _load_generate()


# --- rendering and validating ------------------------------------------------------------


def kustomize(path: Path) -> list[dict[str, Any]]:
    require(KUBECTL is not None, "kubectl is not installed (it renders the kustomizations)")
    result = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(K8S / "overlays" / overlay))


def rendered(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(overlay)))


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
    require(kubernetes_validate is not None, "kubernetes-validate is not installed (pip install kubernetes-validate)")
    return kubernetes_validate


@functools.cache
def _crd_validator(kind: str):
    """A JSON Schema validator for `kind` from its KubeRay CRD: strict, trimmed parts checked as Kubernetes types."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    _kubernetes_validate()
    plural = {"RayService": "rayservices", "RayJob": "rayjobs"}[kind]
    crd = next(d for d in yaml.safe_load_all((CRDS / f"ray.io_{plural}.yaml").read_text()) if d)
    assert crd["spec"]["names"]["kind"] == kind
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = crd_to_jsonschema(version["schema"]["openAPIV3Schema"])
    object_meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    schema["properties"]["metadata"] = {"$ref": f"{K8S_DEFINITIONS}#/$defs/{object_meta}"}
    definitions = json.loads(
        importlib.resources.files("kubernetes_validate")
        .joinpath("kubernetes-json-schema", f"v{K8S_VERSION}-local-strict", "_definitions.json")
        .read_text()
    )
    registry = Registry().with_resource(K8S_DEFINITIONS, Resource.from_contents(definitions))
    return Draft202012Validator(schema, registry=registry)


def crd_to_jsonschema(node: Any) -> Any:
    """An OpenAPI v3 CRD schema as JSON Schema: unknown fields refused (as `kubectl apply`'s strict
    field validation does), `x-docent-trimmed` nodes checked against the Kubernetes type they name."""
    if isinstance(node, list):
        return [crd_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "x-docent-trimmed" in node:
        target = node["x-docent-trimmed"]
        return False if target == "unused" else {"$ref": f"{K8S_DEFINITIONS}#/$defs/{target}"}
    schema = {}
    for key, value in node.items():
        if key == "properties":
            schema[key] = {name: crd_to_jsonschema(child) for name, child in value.items()}
        elif not key.startswith("x-kubernetes-"):
            schema[key] = crd_to_jsonschema(value)
    open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and not open_ended:
        schema["additionalProperties"] = False
    return schema


def crd_errors(doc: dict[str, Any]) -> list[str]:
    validator = _crd_validator(doc["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


# --- walking the rendered resources ----------------------------------------------------


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template a resource holds."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "Job"):
        yield "template", spec["template"]["spec"]
    elif kind == "CronJob":
        yield "jobTemplate", spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind in ("RayService", "RayJob"):
        cluster = spec["rayClusterConfig"] if kind == "RayService" else spec["rayClusterSpec"]
        yield "head", cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            yield f"worker group {group['groupName']}", group["template"]["spec"]
        if kind == "RayJob" and "submitterPodTemplate" in spec:
            yield "submitter", spec["submitterPodTemplate"]["spec"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        for where, spec in pod_specs(doc):
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield f"{doc['kind']}/{doc['metadata']['name']} {where} container {container['name']}", container


def _cluster(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterConfig"]


def _head(doc: dict[str, Any]) -> dict[str, Any]:
    return _cluster(doc)["headGroupSpec"]["template"]["spec"]


def without_scaling(deployment: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in deployment.items() if k not in generate.SCALING_KEYS}


def serve_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(one(docs, "RayService")["spec"]["serveConfigV2"])


def deployments(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (application,) = config["applications"]
    return {d["name"]: d for d in application["deployments"]}


_UNITS = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: Any) -> float:
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


# --- render and validate ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_deployment(overlay):
    docs = rendered(overlay)
    generated = ("ConfigMap", "Secret")  # named <name>-<hash>
    names = [d["metadata"]["name"] for d in docs]
    kinds = {(d["kind"], name.rsplit("-", 1)[0] if d["kind"] in generated else name) for d, name in zip(docs, names)}
    for expected in [
        ("RayService", "docent"), ("RayJob", "docent-ingest"), ("CronJob", "docent-reindex"),
        ("StatefulSet", "docent-postgres"), ("Service", "docent-postgres"),
        ("Deployment", "docent-redis"), ("Service", "docent-redis"),
        ("Deployment", "docent-mlflow"), ("Service", "docent-mlflow"),
        ("PodDisruptionBudget", "docent-ray-workers"), ("PersistentVolumeClaim", "docent-ingest-data"),
        ("ConfigMap", "docent-env"), ("ServiceAccount", "docent-reindex"), ("Role", "docent-reindex"),
    ]:
        assert expected in kinds, f"{overlay} lacks {expected}"
    namespace = one(docs, "Namespace")["metadata"]["name"]
    assert all(d["metadata"].get("namespace") == namespace for d in docs if d["kind"] != "Namespace")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_standard_resources_validate_against_the_kubernetes_schema(overlay):
    kubernetes_validate = _kubernetes_validate()
    checked = 0
    for doc in rendered(overlay):
        if doc["apiVersion"].startswith("ray.io/"):
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {'/'.join(map(str, exc.path))}: {exc.message}")
        checked += 1
    assert checked >= 15


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kuberay_resources_validate_against_the_crd_schemas(overlay):
    docs = rendered(overlay)
    for kind in ("RayService", "RayJob"):
        doc = one(docs, kind)
        assert doc["apiVersion"] == "ray.io/v1"
        assert crd_errors(doc) == [], f"{overlay} {kind} does not validate"


@pytest.mark.parametrize(
    "kind, mutate, complaint",
    [
        ("RayService", lambda d: d["spec"]["rayClusterConfig"].update(workerGroupSpec=[]), "workerGroupSpec"),
        ("RayService", lambda d: _cluster(d)["workerGroupSpecs"][0].update(maxReplicas="four"), "four"),
        ("RayService", lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"), "groupName"),
        ("RayService", lambda d: _cluster(d)["autoscalerOptions"].update(upscalingMode="Eager"), "Eager"),
        ("RayService", lambda d: _head(d)["containers"][0].update(imagee="x"), "imagee"),
        ("RayService", lambda d: d["spec"].update(status={}), "status"),
        ("RayJob", lambda d: d["spec"].update(shutdownAfterJobFinish=True), "shutdownAfterJobFinish"),
        ("RayJob", lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"].pop("template"), "template"),
        ("RayJob", lambda d: d["spec"]["submitterPodTemplate"]["spec"].update(restartPolicy=3), "3"),
    ],
)
def test_the_crd_validation_catches_mistakes(kind, mutate, complaint):
    doc = one(rendered("prod"), kind)
    mutate(doc)
    errors = crd_errors(doc)
    assert errors and any(complaint in e for e in errors), errors


# --- the Serve config: one source -----------------------------------------------------------


def test_generated_files_are_up_to_date():
    assert generate.stale() == [], "run: .venv/bin/python k8s/generate.py"


def test_base_serve_config_is_config_serve_yaml():
    source = yaml.safe_load((ROOT / "services" / "gateway" / "serve.yaml").read_text())
    served = serve_config(rendered("dev"))  # dev runs the base's serveConfigV2
    assert served["applications"] == source["applications"]
    # Only the cluster-wide options a Kubernetes cluster needs differ.
    for key in set(source) | set(served):
        if key not in generate.K8S_CLUSTER_OPTIONS:
            assert served.get(key) == source.get(key), key
    assert served["http_options"] == {**source.get("http_options", {}), "host": "0.0.0.0"}
    assert served["proxy_location"] == "EveryNode"
    assert served["http_options"]["port"] == SERVE_PORT


def test_prod_changes_only_the_scaling_of_deployments():
    base, prod = serve_config(rendered("dev")), serve_config(rendered("prod"))
    strip = lambda config: {
        **config,
        "applications": [
            {**app, "deployments": [without_scaling(d) for d in app["deployments"]]}
            for app in config["applications"]
        ],
    }
    assert strip(prod) == strip(base)
    assert prod != base


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_its_own_scaling(overlay):
    from ray.serve.schema import ServeDeploySchema

    config = serve_config(rendered(overlay))
    ServeDeploySchema.model_validate(config)  # what the Serve REST API will be given
    found = deployments(config)
    assert set(found) == {"gateway", "embedder", "retriever", "reranker", "router", "generator"}
    for name, deployment in found.items():
        assert ("num_replicas" in deployment) != ("autoscaling_config" in deployment), name
        assert deployment["ray_actor_options"].get("num_cpus", 0) > 0, name


def test_the_generator_changes_nothing_but_scaling():
    config = generate.base_serve_config(yaml.safe_load((ROOT / "services" / "gateway" / "serve.yaml").read_text()))
    with pytest.raises(generate.GenerateError, match="import_path"):
        generate.apply_scaling(config, {"deployments": {"gateway": {"import_path": "elsewhere:app"}}})
    with pytest.raises(generate.GenerateError, match="no deployment named"):
        generate.apply_scaling(config, {"deployments": {"gatewy": {"num_replicas": 2}}})
    scaled = generate.apply_scaling(config, {"deployments": {"router": {"autoscaling_config": {"max_replicas": 3}}}})
    assert deployments(scaled)["router"] == {
        **{k: v for k, v in deployments(config)["router"].items() if k not in generate.SCALING_KEYS},
        "autoscaling_config": {"max_replicas": 3},
    }


# --- what the deployment promises -----------------------------------------------------------


def test_prod_gives_the_embedder_and_the_generator_gpus():
    docs = rendered("prod")
    found = deployments(serve_config(docs))
    for name in ("embedder", "generator"):
        assert found[name]["ray_actor_options"].get("num_gpus", 0) > 0, name
    cluster = one(docs, "RayService")["spec"]["rayClusterConfig"]
    gpu_groups = [
        g for g in cluster["workerGroupSpecs"]
        for c in g["template"]["spec"]["containers"]
        if quantity(c["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1
        and c["resources"]["requests"].get("nvidia.com/gpu") == c["resources"]["limits"]["nvidia.com/gpu"]
    ]
    assert gpu_groups, "no worker group with GPUs"
    # The replicas' GPU shares at their minimum fit into the GPU group at its maximum.
    demand = sum(
        d["ray_actor_options"].get("num_gpus", 0)
        * d.get("autoscaling_config", {}).get("min_replicas", d.get("num_replicas", 1))
        for d in found.values()
    )
    assert demand <= sum(g["maxReplicas"] for g in gpu_groups)
    assert all(g["template"]["spec"].get("tolerations") for g in gpu_groups)


def test_dev_is_cpu_only_and_small():
    docs = rendered("dev")
    assert all("nvidia.com/gpu" not in str(c.get("resources")) for _, c in containers(docs))
    assert all(d["ray_actor_options"].get("num_gpus", 0) == 0 for d in deployments(serve_config(docs)).values())
    (group,) = one(docs, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 1
    # services/gateway/serve.yaml's replicas fit on the one worker (Ray counts the CPU limit).
    found = deployments(serve_config(docs)).values()
    needed = sum(d["ray_actor_options"]["num_cpus"] * d["num_replicas"] for d in found)
    assert needed <= quantity(group["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    prod_requests = {w: c["resources"]["requests"] for w, c in containers(rendered("prod"))}
    for where, container in containers(docs):
        if where in prod_requests:
            assert quantity(container["resources"]["requests"]["cpu"]) <= quantity(prod_requests[where]["cpu"]), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_ray_autoscaler_scales_the_worker_groups(overlay):
    cluster = one(rendered(overlay), "RayService")["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    if overlay == "prod":
        assert any(g["maxReplicas"] > g["minReplicas"] for g in cluster["workerGroupSpecs"])
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # replicas go to the workers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_the_gateway(overlay):
    app = (ROOT / "services" / "gateway" / "app.py").read_text()
    assert '"/healthz"' in app and '"/readyz"' in app
    cluster = one(rendered(overlay), "RayService")["spec"]["rayClusterConfig"]
    for group in cluster["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
            assert container[probe]["httpGet"] == {"path": path, "port": SERVE_PORT}, (group["groupName"], probe)
        assert container["livenessProbe"]["failureThreshold"] * container["livenessProbe"]["periodSeconds"] >= 60
        assert {"name": "serve", "containerPort": SERVE_PORT} in container["ports"]
    # KubeRay deploys the Serve app only once the head pod is ready: no head probe may wait for the app.
    (head,) = cluster["headGroupSpec"]["template"]["spec"]["containers"]
    assert not any(probe in head for probe in ("readinessProbe", "livenessProbe", "startupProbe"))
    assert one(rendered(overlay), "RayService")["spec"]["excludeHeadPodFromServeSvc"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay):
    docs = rendered(overlay)
    found = list(containers(docs))
    assert len(found) >= 7
    for where, container in found:
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request is not None and limit is not None, f"{where}: {resource} request and limit"
            assert quantity(request) <= quantity(limit), f"{where}: {resource} request above its limit"
    autoscaler = one(docs, "RayService")["spec"]["rayClusterConfig"]["autoscalerOptions"]["resources"]
    assert {"cpu", "memory"} <= set(autoscaler["requests"]) and {"cpu", "memory"} <= set(autoscaler["limits"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_disruption_budgets_select_the_rayservice_pods(overlay):
    docs = rendered(overlay)
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    cluster = one(docs, "RayService")["spec"]["rayClusterConfig"]
    templates = {"head": cluster["headGroupSpec"]["template"]}
    templates |= {f"worker {g['groupName']}": g["template"] for g in cluster["workerGroupSpecs"]}

    def selected(budget, template):
        labels = template["metadata"]["labels"]
        return all(labels.get(k) == v for k, v in budget["spec"]["selector"]["matchLabels"].items())

    for budget in budgets:
        assert budget["spec"]["selector"]["matchLabels"], budget["metadata"]["name"]
        assert any(selected(budget, t) for t in templates.values()), f"{budget['metadata']['name']} selects no Ray pod"
    must = [name for name in templates if name != "head" or overlay == "prod"]
    for name in must:
        assert any(selected(b, templates[name]) for b in budgets), f"no PodDisruptionBudget covers the {name} pods"
    # The ingest job's pods are not the query service's: no budget holds them.
    job = one(docs, "RayJob")["spec"]["rayClusterSpec"]
    assert not any(selected(b, job["headGroupSpec"]["template"]) for b in budgets)


_CRON_FIELDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def valid_cron(schedule: str) -> bool:
    fields = schedule.split()
    if len(fields) != 5:
        return False
    for field, (low, high) in zip(fields, _CRON_FIELDS):
        for part in field.split(","):
            match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
            if not match:
                return False
            start, end, step = match.group(2), match.group(3), match.group(4)
            if step is not None and int(step) == 0:
                return False
            if start is not None:
                first, last = int(start), int(end) if end is not None else int(start)
                if not (low <= first <= last <= high):
                    return False
    return True


def test_the_cron_check_itself():
    assert valid_cron("0 3 * * *") and valid_cron("15 */6 * * 1-5") and valid_cron("0,30 8-18 1 1,6 0")
    for bad in ("0 3 * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "5-1 * * * *", "@daily", "* * 0 * *"):
        assert not valid_cron(bad), bad


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_reindex_cronjob_reruns_the_ingest_rayjob(overlay):
    docs = rendered(overlay)
    cron = one(docs, "CronJob", "docent-reindex")
    assert valid_cron(cron["spec"]["schedule"]), cron["spec"]["schedule"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = one(docs, "RayJob")
    assert re.match(r"docent ingest s3://\S+ --base-url https?://\S+", job["spec"]["entrypoint"])
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TEMPLATE"] == job["metadata"]["name"]
    # The script it runs is k8s/base/reindex.sh, from a generated ConfigMap.
    volume = next(v for v in pod["volumes"] if v["name"] == "scripts")
    script = one(docs, "ConfigMap", volume["configMap"]["name"])["data"]["reindex.sh"]
    assert script == (K8S / "base" / "reindex.sh").read_text()
    assert container["command"] == ["/bin/sh", "/scripts/reindex.sh"]
    # Its service account may create and watch RayJobs, and nothing else.
    account = pod["serviceAccountName"]
    binding = one(docs, "RoleBinding")
    namespace = cron["metadata"]["namespace"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    (rule,) = one(docs, "Role", binding["roleRef"]["name"])["rules"]
    assert rule["apiGroups"] == ["ray.io"] and rule["resources"] == ["rayjobs"]
    assert {"get", "create", "list", "delete"} <= set(rule["verbs"])


FAKE_KUBECTL = """\
#!{python}
import json, os, sys
state_path = os.environ["FAKE_KUBECTL_STATE"]
state = json.load(open(state_path))
args = sys.argv[1:]
state["calls"].append(args)
out = ""
if args[:3] == ["get", "rayjob", state["template"]]:
    out = json.dumps(state["spec"])
elif args[:3] == ["create", "-f", "-"]:
    state["created"] = json.loads(sys.stdin.read())
    out = "rayjob.ray.io/docent-ingest-run-x7k2p"
elif args[:2] == ["get", "rayjob.ray.io/docent-ingest-run-x7k2p"]:
    if "jobDeploymentStatus" in args[-1]:
        out = state["deployment_statuses"].pop(0)
    elif "jobStatus" in args[-1]:
        out = state["job_status"]
    else:
        out = "ray job failed"
elif args[:2] == ["get", "rayjobs"]:
    out = "\\n".join(state["runs"])
elif args[0] == "delete":
    state["deleted"].append(args[1])
json.dump(state, open(state_path, "w"))
sys.stdout.write(out)
"""


def run_reindex(tmp_path, job_status="SUCCEEDED", statuses=("", "Initializing", "Running", "Complete"), runs=5):
    spec = one(rendered("prod"), "RayJob")["spec"]
    state = {
        "template": "docent-ingest", "spec": spec, "calls": [], "deleted": [], "job_status": job_status,
        "deployment_statuses": list(statuses), "runs": [f"rayjob.ray.io/docent-ingest-run-{i}" for i in range(runs)],
    }
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    (tmp_path / "state.json").write_text(json.dumps(state))
    env = {
        **os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_KUBECTL_STATE": str(tmp_path / "state.json"),
        "TEMPLATE": "docent-ingest", "KEEP": "3", "POLL_SECONDS": "0",
    }
    script = str(K8S / "base" / "reindex.sh")
    result = subprocess.run(["/bin/sh", script], env=env, capture_output=True, text=True, timeout=60, check=False)
    return result, json.loads((tmp_path / "state.json").read_text())


def test_the_reindex_script_creates_a_copy_of_the_ingest_rayjob_and_waits(tmp_path):
    result, state = run_reindex(tmp_path)
    assert result.returncode == 0, result.stderr
    created = state["created"]
    assert created["spec"] == one(rendered("prod"), "RayJob")["spec"]
    assert created["metadata"]["generateName"] == "docent-ingest-run-"
    assert created["metadata"]["labels"]["docent.dev/template"] == "docent-ingest"
    assert crd_errors({**created, "metadata": {**created["metadata"], "namespace": "docent"}}) == []
    # Waited until Complete, then kept the newest 3 of 5 runs.
    assert state["deployment_statuses"] == []
    assert state["deleted"] == ["rayjob.ray.io/docent-ingest-run-0", "rayjob.ray.io/docent-ingest-run-1"]


@pytest.mark.parametrize(
    "job_status, statuses", [("FAILED", ("Running", "Complete")), ("", ("Running", "Failed"))]
)
def test_the_reindex_script_fails_when_the_ingest_fails(tmp_path, job_status, statuses):
    result, state = run_reindex(tmp_path, job_status=job_status, statuses=statuses)
    assert result.returncode == 1
    assert state["deleted"] == []
    assert "docent-ingest-run-x7k2p" in result.stderr


# --- settings, secrets, images ---------------------------------------------------------------


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_settings_come_in_as_environment_variables(monkeypatch):
    from docent.settings import Settings

    env = env_file(K8S / "base" / "docent.env")
    ray_docs = yaml.safe_load((ROOT / "config" / "ray-docs.yaml").read_text())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.index == ray_docs["index"]
    assert settings.ingest.exclude == ray_docs["ingest"]["exclude"]
    assert settings.mlflow_tracking_uri and str(settings.data_dir) == "/data"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_containers_get_the_settings_and_the_secrets(overlay):
    docs = rendered(overlay)
    config_maps = [d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"]
    (env_name,) = [name for name in config_maps if name.startswith("docent-env-")]
    for where, container in containers([one(docs, "RayService"), one(docs, "RayJob")]):
        if "submitter" in where:
            continue
        sources = container["envFrom"]
        assert {"configMapRef": {"name": env_name}} in sources, where
        assert any(s.get("secretRef", {}).get("name", "").startswith("docent-secrets") for s in sources), where


def test_the_dev_secret_is_a_placeholder_with_every_key_used():
    docs = rendered("dev")
    secret = one(docs, "Secret")
    placeholder = env_file(K8S / "overlays" / "dev" / "secrets.env.example")
    assert set(secret["data"]) == set(placeholder)
    for key, value in placeholder.items():
        if "PASSWORD" in key or "SECRET" in key:
            assert value == "change-me", key
        if key.endswith(("_URL", "_URI")):
            assert ":change-me@" in value, key
    used = {
        ref["secretKeyRef"]["key"]
        for _, container in containers(docs)
        for e in container.get("env", [])
        if (ref := e.get("valueFrom", {})).get("secretKeyRef")
    }
    assert used <= set(placeholder)
    assert {"DATABASE_URL", "MLFLOW_BACKEND_STORE_URI"} <= set(placeholder)
    assert not (K8S / "overlays" / "prod" / "secrets.env").exists()


def test_prod_pins_its_images():
    docs = rendered("prod")
    images = [container["image"] for _, container in containers(docs)]
    for image in images:
        name, _, tag = image.rpartition(":")
        assert "@sha256:" in image or (name and tag and tag != "latest" and "/" not in tag), image
    docent = {image for image in images if image.split(":")[0].endswith("/docent")}
    assert len(docent) == 1, docent  # one docent version everywhere
    clusters = (("RayService", "rayClusterConfig"), ("RayJob", "rayClusterSpec"))
    versions = {one(docs, kind)["spec"][key]["rayVersion"] for kind, key in clusters}
    assert len(versions) == 1


def test_an_external_database_replaces_the_statefulset(tmp_path):
    overlay = tmp_path / "external-db"
    overlay.mkdir()
    relative = os.path.relpath(K8S, overlay)
    (overlay / "kustomization.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [{relative}/overlays/prod]
        components: [{relative}/components/external-database]
        """))
    docs = kustomize(overlay)
    assert not [d for d in docs if "postgres" in d["metadata"]["name"]]
    assert one(docs, "RayService") and one(docs, "Deployment", "docent-mlflow")


def test_dev_deploys_the_object_store_it_points_at_with_the_buckets_it_reads():
    docs = rendered("dev")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    env = {}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            env.update(doc.get("data", {}))
    endpoints = {key: env[key] for key in ("AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")}
    for key, url in endpoints.items():
        host, _, port = url.removeprefix("http://").partition(":")
        assert host in services, f"{key} names {host}, which the dev overlay does not deploy"
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, key
    buckets = {
        re.search(r"s3://([^/\s]+)", one(docs, "RayJob")["spec"]["entrypoint"]).group(1),
        re.search(r"s3://([^/\s]+)", env["MLFLOW_ARTIFACTS_DESTINATION"]).group(1),
    }
    (creates,) = one(docs, "Job", "minio-buckets")["spec"]["template"]["spec"]["containers"]
    assert all(f"store/{bucket}" in " ".join(creates["args"]) for bucket in buckets), buckets


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pods_serving_the_gateway_ask_to_be_scraped_at_its_metrics(overlay):
    groups = one(rendered(overlay), "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    for group in groups:
        annotations = group["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
        ports = {p["containerPort"] for p in group["template"]["spec"]["containers"][0]["ports"]}
        assert int(annotations["prometheus.io/port"]) == SERVE_PORT and SERVE_PORT in ports, group["groupName"]
