"""Every deployment file validates offline against its schema.

- Kubernetes resources: kubernetes-validate's bundled schemas, strict (an
  unknown field is an error), for the oldest Kubernetes we support and the
  newest the package knows.
- KEDA's ScaledObject and TriggerAuthentication, and kustomization files: the
  schema subsets in tests/deploy/schemas, written from KEDA's CRDs and
  kustomize's reference (no package ships them).
- docker-compose.yml: the Compose Specification's schema, as vendored by
  check-jsonschema.

Each validator is also shown a broken document, so a pass means something.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from check_jsonschema.builtin_schemas import get_builtin_schema
from kubernetes_validate.utils import latest_version

from tests.deploy.manifests import (
    Doc,
    Manifest,
    all_manifests,
    find,
    kustomization_files,
    load_compose,
    load_yaml_documents,
    manifest_files,
    schema,
)

# The oldest Kubernetes the manifests target (PodDisruptionBudget policy/v1,
# autoscaling/v2 and the "restricted" Pod Security labels are all older).
OLDEST_KUBERNETES = "1.29.0"
KUBERNETES_VERSIONS = [OLDEST_KUBERNETES, latest_version()]

CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication-v1alpha1.json",
}


def validator_for(schema_doc: Doc) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema_doc)
    cls.check_schema(schema_doc)
    validator: jsonschema.protocols.Validator = cls(schema_doc)
    return validator


def schema_errors(schema_doc: Doc, doc: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator_for(schema_doc).iter_errors(doc)
    ]


def is_custom_resource(manifest: Manifest) -> bool:
    return (manifest.doc["apiVersion"], manifest.kind) in CRD_SCHEMAS


def test_there_are_manifests_of_every_kind_the_deployment_needs() -> None:
    kinds = {m.kind for m in all_manifests()}

    assert {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "StatefulSet",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ScaledObject",
        "TriggerAuthentication",
        "HorizontalPodAutoscaler",
    } <= kinds
    assert manifest_files(), "no manifests found"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "manifest",
    [m for m in all_manifests() if not is_custom_resource(m)],
    ids=str,
)
def test_kubernetes_resources_validate_strictly(manifest: Manifest, version: str) -> None:
    kubernetes_validate.validate(manifest.doc, version, strict=True)


@pytest.mark.parametrize("manifest", [m for m in all_manifests() if is_custom_resource(m)], ids=str)
def test_keda_resources_validate_against_their_crd_schema(manifest: Manifest) -> None:
    schema_doc = schema(CRD_SCHEMAS[(manifest.doc["apiVersion"], manifest.kind)])

    assert schema_errors(schema_doc, manifest.doc) == []


@pytest.mark.parametrize("path", kustomization_files(), ids=lambda p: p.parent.name)
def test_kustomizations_validate(path: Any) -> None:
    (doc,) = load_yaml_documents(path)

    assert schema_errors(schema("kustomization.json"), doc) == []


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    assert schema_errors(get_builtin_schema("vendor.compose-spec"), load_compose()) == []


# --- the validators reject what they should -------------------------------------------


def test_strict_kubernetes_validation_rejects_a_misspelt_field() -> None:
    deployment = copy.deepcopy(find("Deployment", "research-arm-worker"))
    pod = deployment["spec"]["template"]["spec"]
    pod["terminationGracePeriod"] = pod.pop("terminationGracePeriodSeconds")

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def test_the_scaledobject_schema_rejects_a_number_where_keda_wants_a_string() -> None:
    scaled = copy.deepcopy(find("ScaledObject", "research-arm-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 4
    scaled["spec"]["triggers"][0]["metadata"]["listname"] = "research"

    errors = schema_errors(schema("keda-scaledobject-v1alpha1.json"), scaled)

    assert any("listLength" in e for e in errors)
    assert any("listname" in e for e in errors)


def test_the_compose_schema_rejects_an_unknown_service_key() -> None:
    compose = load_compose()
    compose["services"]["worker"]["replica"] = 4

    assert schema_errors(get_builtin_schema("vendor.compose-spec"), compose) != []
