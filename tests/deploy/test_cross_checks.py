"""The Kubernetes manifests agree with the code they deploy and with each other.

Names that must match are checked here, not trusted: the queue KEDA watches
is the queue Celery consumes, every variable set is a setting the code reads,
probes ask the sidecar's real endpoints on its real port, selectors select the
pods they mean, and scale-in has time to finish.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.constants import QUEUE
from tests.deploy.manifests import (
    K8S_DIR,
    Doc,
    Manifest,
    all_manifests,
    container,
    container_port,
    containers,
    env_file_values,
    find,
    http_probes,
    kustomization_files,
    load_yaml_documents,
    manifest_files,
    of_kind,
    pod_labels,
    pod_spec,
    runs_our_image,
    selector_matches,
    workloads,
)
from tests.deploy.settings_names import (
    assert_known_variables,
    settings_from_environment,
)
from worker.celery_config import celery_config
from worker.sidecar import ROUTES

WORKER = "research-arm-worker"
CONFIG = "research-arm-config"
SECRET = "research-arm-secrets"
SECRETS_ENV_EXAMPLE = K8S_DIR / "base" / "secrets.env.example"


def worker_deployment() -> Doc:
    return find("Deployment", WORKER)


def config_data() -> dict[str, str]:
    data: dict[str, str] = find("ConfigMap", CONFIG)["data"]
    return data


def redis_trigger() -> Doc:
    (trigger,) = find("ScaledObject", WORKER)["spec"]["triggers"]
    assert trigger["type"] == "redis"
    return trigger


# --- kustomize ------------------------------------------------------------------------


def kustomization(path: Path) -> Doc:
    (doc,) = load_yaml_documents(path)
    return doc


def test_every_manifest_file_belongs_to_exactly_one_kustomization() -> None:
    listed: list[Path] = []
    for path in kustomization_files():
        for resource in kustomization(path)["resources"]:
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: {resource} does not exist"
            if target.is_file():
                listed.append(target)

    assert sorted(listed) == manifest_files()


def test_both_overlays_build_on_the_base_in_one_namespace() -> None:
    namespace = find("Namespace", "research-arm")["metadata"]["name"]
    for overlay in ("keda", "hpa"):
        doc = kustomization(K8S_DIR / overlay / "kustomization.yaml")
        assert "../base" in doc["resources"]
        assert doc["namespace"] == namespace
    assert kustomization(K8S_DIR / "base" / "kustomization.yaml")["namespace"] == namespace


def secret_keys_referenced() -> Iterator[tuple[str, str]]:
    """(where, key) for every reference to the Secret in the manifests."""
    for workload in workloads():
        for item in containers(workload.doc):
            for variable in item.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET, f"{workload}: unknown Secret {ref['name']}"
                    yield f"{workload}/{item['name']}", ref["key"]
    for auth in of_kind("TriggerAuthentication"):
        for ref in auth.doc["spec"]["secretTargetRef"]:
            assert ref["name"] == SECRET
            yield str(auth), ref["key"]


def test_every_secret_key_referenced_is_generated_from_the_example_env_file() -> None:
    (generator,) = kustomization(K8S_DIR / "base" / "kustomization.yaml")["secretGenerator"]
    assert generator["name"] == SECRET
    assert generator["envs"] == ["secrets.env"]
    example_keys = set(env_file_values(SECRETS_ENV_EXAMPLE))

    referenced = {key for _, key in secret_keys_referenced()}

    assert referenced == example_keys


def test_the_real_secrets_file_is_ignored_by_git() -> None:
    import subprocess

    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", str(K8S_DIR / "base" / "secrets.env")],
        cwd=K8S_DIR,
        check=False,
    )
    assert ignored.returncode == 0


# --- the queue ----------------------------------------------------------------------------


def test_keda_watches_the_list_celery_consumes(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_environment(monkeypatch, {**config_data(), "REDIS_URL": "redis://x"})
    config = celery_config(settings)
    transport = config["broker_transport_options"]

    # kombu names the list after the queue, with a prefix only under
    # global_keyprefix and a suffix only for priorities above 0.
    assert "global_keyprefix" not in transport
    assert "priority_steps" not in transport and "queue_order_strategy" not in transport
    assert "task_default_priority" not in config and "task_queue_max_priority" not in config
    assert config["task_default_queue"] == QUEUE
    assert all(route["queue"] == QUEUE for route in config["task_routes"].values())
    assert redis_trigger()["metadata"]["listName"] == QUEUE
    assert redis_trigger()["metadata"]["databaseIndex"] == "0"


def test_keda_reads_the_redis_the_workers_use() -> None:
    service = find("Service", "research-arm-redis")
    namespace = find("Namespace", "research-arm")["metadata"]["name"]
    (port,) = service["spec"]["ports"]

    address = redis_trigger()["metadata"]["address"]

    assert address == f"research-arm-redis.{namespace}.svc.cluster.local:{port['port']}"
    for item in containers(worker_deployment()):
        urls = [v["value"] for v in item["env"] if v["name"] == "REDIS_URL"]
        assert urls == [f"redis://:$(REDIS_PASSWORD)@research-arm-redis:{port['port']}/0"]


def test_autoscalers_target_the_worker_and_never_scale_to_zero() -> None:
    scaled = find("ScaledObject", WORKER)["spec"]
    hpa = find("HorizontalPodAutoscaler", WORKER)["spec"]
    auth_name = redis_trigger()["authenticationRef"]["name"]

    assert scaled["scaleTargetRef"]["name"] == WORKER
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER}
    # Unacked messages of a dead worker return only through a live worker's sweep.
    assert scaled["minReplicaCount"] >= 1
    assert hpa["minReplicas"] >= 1
    assert "idleReplicaCount" not in scaled
    assert find("TriggerAuthentication", auth_name)["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": SECRET, "key": "REDIS_PASSWORD"}
    ]


# --- variables ------------------------------------------------------------------------------


def test_every_variable_given_to_our_containers_is_a_setting_or_a_known_outsider() -> None:
    names: dict[str, set[str]] = {"ConfigMap": set(config_data())}
    for workload in workloads():
        for item in containers(workload.doc):
            if runs_our_image(item):
                names[f"{workload}/{item['name']}"] = {v["name"] for v in item.get("env", [])}

    for where, variables in names.items():
        assert_known_variables(variables, where)


def test_the_configmap_is_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_environment(monkeypatch, config_data())

    assert settings.worker_pool == "prefork"
    assert settings.qdrant_url == "http://research-arm-qdrant:6333"


def test_our_containers_take_config_from_the_configmap_and_secrets_from_the_secret() -> None:
    for workload in (worker_deployment(),):
        for item in containers(workload):
            assert {"configMapRef": {"name": CONFIG}} in item["envFrom"]
            for variable in item["env"]:
                name = variable["name"]
                if name in {"REDIS_PASSWORD", "QDRANT_API_KEY", "OPENAI_API_KEY"}:
                    assert variable["valueFrom"]["secretKeyRef"]["key"] == name
    assert not {"REDIS_PASSWORD", "QDRANT_API_KEY", "OPENAI_API_KEY"} & set(config_data())


def test_every_dollar_reference_names_a_variable_defined_before_it() -> None:
    # Kubernetes expands $(NAME) only for variables defined earlier in the
    # container's env; otherwise the literal text "$(NAME)" is used.
    for workload in workloads():
        for item in containers(workload.doc):
            defined: list[str] = []
            for variable in item.get("env", []):
                for name in re.findall(r"\$\((\w+)\)", variable.get("value", "")):
                    assert name in defined, f"{workload}/{item['name']}: {variable['name']}"
                defined.append(variable["name"])
            for argument in [*item.get("command", []), *item.get("args", [])]:
                for name in re.findall(r"\$\((\w+)\)", argument):
                    assert name in defined, f"{workload}/{item['name']}: argument {argument}"


# --- the sidecar and its probes ---------------------------------------------------------------


def test_the_sidecar_container_runs_the_sidecar_command_on_the_health_port() -> None:
    from worker.cli import _build_parser

    sidecar = container(worker_deployment(), "sidecar")
    worker = container(worker_deployment(), "worker")

    assert _build_parser().parse_args(sidecar["args"]).command == "sidecar"
    assert _build_parser().parse_args(worker["args"]).command == "worker"
    assert container_port(sidecar, "http-health") == int(config_data()["HEALTH_PORT"])


def test_every_probe_of_the_worker_pod_asks_a_real_sidecar_endpoint_on_its_port() -> None:
    sidecar = container(worker_deployment(), "sidecar")
    health_port = int(config_data()["HEALTH_PORT"])
    probes = [
        (item["name"], kind, get)
        for item in containers(worker_deployment())
        for kind, get in http_probes(item)
    ]

    assert {(name, kind) for name, kind, _ in probes} >= {
        ("sidecar", "readinessProbe"),
        ("sidecar", "livenessProbe"),
        ("worker", "livenessProbe"),
    }
    for name, kind, get in probes:
        assert get["path"] in ROUTES, f"{name} {kind}: {get['path']} is not a sidecar endpoint"
        # The worker container's probes reach the sidecar over the pod's IP.
        port = get["port"] if isinstance(get["port"], int) else container_port(sidecar, get["port"])
        assert port == health_port, f"{name} {kind} probes port {port}"
    readiness = container(worker_deployment(), "sidecar")["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    # A stale heartbeat must restart the worker container, the one that froze.
    assert container(worker_deployment(), "worker")["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_worker_and_sidecar_share_the_heartbeat_and_metrics_directory() -> None:
    data = config_data()
    shared = str(Path(data["HEARTBEAT_FILE"]).parent)
    volumes = {v["name"]: v for v in pod_spec(worker_deployment())["volumes"]}
    mounted = {
        name: {
            m["mountPath"]: m["name"] for m in container(worker_deployment(), name)["volumeMounts"]
        }
        for name in ("worker", "sidecar")
    }

    assert Path(data["METRICS_DIR"]).is_relative_to(shared)
    assert mounted["worker"][shared] == mounted["sidecar"][shared]
    assert "emptyDir" in volumes[mounted["worker"][shared]]


# --- scale-in ---------------------------------------------------------------------------------


def test_the_grace_period_outlasts_the_soft_shutdown_and_one_upstream_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from_environment(monkeypatch, {**config_data(), "REDIS_URL": "redis://x"})
    grace = pod_spec(worker_deployment())["terminationGracePeriodSeconds"]
    # After the soft shutdown, a cancelled prefork child exits once its
    # in-flight HTTP call ends: at most one upstream timeout.
    longest_call = max(
        settings.llm_timeout_seconds,
        settings.arxiv_timeout_seconds,
        settings.qdrant_timeout_seconds,
    )

    assert settings.worker_soft_shutdown_timeout_seconds > 0
    assert grace >= settings.worker_soft_shutdown_timeout_seconds + longest_call + 10
    assert celery_config(settings)["worker_soft_shutdown_timeout"] == (
        settings.worker_soft_shutdown_timeout_seconds
    )


def test_the_disruption_budget_covers_the_worker_pods_and_lets_drains_proceed() -> None:
    pdb = find("PodDisruptionBudget", WORKER)["spec"]

    assert selector_matches(pdb["selector"], pod_labels(worker_deployment()))
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}


# --- selectors, services, security ------------------------------------------------------------


def test_each_workload_selects_its_own_pods_only() -> None:
    for workload in workloads():
        selector = workload.doc["spec"]["selector"]
        matching = [w.name for w in workloads() if selector_matches(selector, pod_labels(w.doc))]
        assert matching == [workload.name], f"{workload} selects {matching}"


def test_each_service_reaches_named_ports_of_exactly_one_workload() -> None:
    for service in of_kind("Service"):
        spec = service.doc["spec"]
        # A Service's selector is matchLabels without the key.
        selector = {"matchLabels": spec["selector"]}
        targets = [w for w in workloads() if selector_matches(selector, pod_labels(w.doc))]
        assert len(targets) == 1, f"{service} selects {[w.name for w in targets]}"
        for port in spec["ports"]:
            named = [
                c
                for c in containers(targets[0].doc)
                if any(p.get("name") == port["targetPort"] for p in c.get("ports", []))
            ]
            assert named, f"{service}: no container port named {port['targetPort']}"


def workloads_reaching(policy: Manifest) -> set[str]:
    """Names of our workloads whose pods a NetworkPolicy's ingress admits."""
    admitted: set[str] = set()
    for rule in policy.doc["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                continue  # other namespaces: checked by name below
            for workload in workloads():
                if selector_matches(peer["podSelector"], pod_labels(workload.doc)):
                    admitted.add(workload.name)
    return admitted


def test_only_workers_and_flower_reach_redis_and_only_workers_reach_qdrant() -> None:
    redis_pods = pod_labels(find("StatefulSet", "research-arm-redis"))
    qdrant_pods = pod_labels(find("StatefulSet", "research-arm-qdrant"))
    to_redis = [
        p
        for p in of_kind("NetworkPolicy")
        if selector_matches(p.doc["spec"]["podSelector"], redis_pods)
    ]
    to_qdrant = [
        p
        for p in of_kind("NetworkPolicy")
        if selector_matches(p.doc["spec"]["podSelector"], qdrant_pods)
    ]

    assert set().union(*(workloads_reaching(p) for p in to_redis)) == {
        WORKER,
        "research-arm-flower",
    }
    assert set().union(*(workloads_reaching(p) for p in to_qdrant)) == {WORKER}
    # Peers from other namespaces must opt in by a label (the orchestrator) or be KEDA.
    for policy in to_redis:
        for rule in policy.doc["spec"]["ingress"]:
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    labels = peer["podSelector"]["matchLabels"]
                    assert labels in (
                        {"research-arm.io/redis-client": "true"},
                        {"app": "keda-operator"},
                    )
                    assert [p["port"] for p in rule["ports"]] == [6379]


@pytest.mark.parametrize("workload", workloads(), ids=str)
def test_pods_meet_the_restricted_pod_security_standard(workload: Manifest) -> None:
    spec = pod_spec(workload.doc)
    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] > 0
    assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for item in containers(workload.doc):
        security = item["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["readOnlyRootFilesystem"] is True
        assert item["resources"]["requests"] and item["resources"]["limits"]["memory"]


def test_all_of_our_containers_run_the_one_image_kustomize_retags() -> None:
    images = kustomization(K8S_DIR / "base" / "kustomization.yaml")["images"]
    ours = [c for w in workloads() for c in containers(w.doc) if runs_our_image(c)]

    assert {c["image"] for c in ours} == {f"research-arm:{images[0]['newTag']}"}
    assert images[0]["name"] == "research-arm"
    # worker, sidecar and Flower: one image, three commands.
    assert {c["name"] for c in ours} == {"worker", "sidecar", "flower"}


def test_flower_has_auth_from_the_secret_and_a_probe_it_serves_unauthenticated() -> None:
    flower = container(find("Deployment", "research-arm-flower"), "flower")
    env = {v["name"]: v for v in flower["env"]}

    assert flower["command"] == ["celery"]
    assert flower["args"][:3] == ["-A", "worker.app", "flower"]
    assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "FLOWER_BASIC_AUTH"
    assert flower["readinessProbe"]["httpGet"]["path"] == "/healthcheck"


def test_stateful_services_keep_their_data_on_persistent_volumes() -> None:
    for name, mount in (
        ("research-arm-redis", "/data"),
        ("research-arm-qdrant", "/qdrant/storage"),
    ):
        statefulset = find("StatefulSet", name)
        claims = {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
        mounts = {
            m["mountPath"]: m["name"] for c in containers(statefulset) for m in c["volumeMounts"]
        }
        assert mounts[mount] in claims


def test_redis_keeps_an_append_only_file_refuses_eviction_and_wants_a_password() -> None:
    args = container(find("StatefulSet", "research-arm-redis"), "redis")["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))

    assert flags["--appendonly"] == "yes"
    assert flags["--maxmemory-policy"] == "noeviction"
    assert flags["--requirepass"] == "$(REDIS_PASSWORD)"


def test_no_manifest_names_a_namespace_other_than_the_kustomization_s() -> None:
    for manifest in all_manifests():
        namespace = manifest.doc["metadata"].get("namespace")
        assert namespace in (None, "research-arm"), str(manifest)
