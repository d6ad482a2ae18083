"""The Helm chart, rendered and linted by Helm's own engine (helm-python-sdk bundles Helm's Go SDK as a
shared library, no helm binary needed), every manifest validated against the Kubernetes OpenAPI schemas
(kubernetes-validate, offline), and the properties that matter asserted on what Helm rendered."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO

CHART = REPO / "helm" / "apiward"
NAMESPACE = "shop"
RELEASE = "rel"
# the chart's minimum (Chart.yaml kubeVersion) and a current release
KUBE_VERSIONS = ("1.25.0", "1.33.0")
UPSTREAM = "http://orders.shop.svc.cluster.local:8080"
INGEST = "ingest-token-value-0123456789abcdef"
READ = "read-token-value-0123456789abcdef"
ADMIN = "admin-token-value-0123456789abcdef"


def _require(module: str) -> Any:
    try:
        return pytest.importorskip(module)
    except pytest.skip.Exception:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is not installed (test dependency)")
        raise


@pytest.fixture(scope="module")
def helm() -> Any:
    return _require("helm_python")


@pytest.fixture(scope="module")
def kv() -> Any:
    return _require("kubernetes_validate")


@pytest.fixture(scope="module")
def chart(helm: Any) -> Iterator[Any]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


def render(chart: Any, values: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(manifests, raw outputs by template) for ``values`` on top of the chart's defaults."""
    out: dict[str, str] = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[dict[str, Any]] = []
    for name, text in out.items():
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs, out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = find(docs, kind, name)
    return doc


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] == "Deployment":
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d["metadata"]["name"], d["spec"]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in spec["containers"] if c["name"] == name]
    return c


def args_of(c: dict[str, Any]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in c.get("args", []) if a.startswith("--") and "=" in a)


# the value combinations a platform engineer installs
CASES: dict[str, dict[str, Any]] = {
    "standalone": {"sensor": {"mode": "standalone", "upstream": UPSTREAM}},
    "standalone-full": {
        "sensor": {"mode": "standalone", "upstream": UPSTREAM, "autoscaling": {"enabled": False}, "replicas": 3,
                   "trustedProxies": ["10.0.0.0/8"], "apiName": "orders", "enforce": True,
                   "analysisProcess": True},
        "tokens": {"ingest": INGEST, "read": READ, "admin": ADMIN},
        "policies": {"files": {"signatures.yaml": "rules: []\n"}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "sidecar-template-only": {"sensor": {"mode": "sidecar"}},
    "sidecar-app": {
        "sensor": {"mode": "sidecar", "sidecar": {"app": {"image": {"repository": "ghcr.io/acme/orders", "tag": "1.4"},
                                                          "port": 8080}}},
        "policies": {"files": {"datatypes.yaml": "types: []\n"}},
    },
    "mirror": {"sensor": {"mode": "mirror", "trustedProxies": ["10.1.0.0/16"]}, "serviceMonitor": {"enabled": True}},
    "postgresql": {
        "collector": {"replicas": 3,
                      "database": {"type": "postgresql", "postgresql": {"existingSecret": "apiward-db"}}},
        "sensor": {"mode": "mirror"},
        "tokens": {"existingSecret": "apiward-tokens-from-vault"},
    },
    "external-collector": {
        "collector": {"enabled": False, "externalUrl": "https://apiward.example.com"},
        "sensor": {"mode": "standalone", "upstream": UPSTREAM},
        "networkPolicy": {"enabled": False},
        "tests": {"enabled": False},
    },
}


# the chart's own ci/ values (what chart-testing lints) and the defaults: installable as they are
for _file in sorted((CHART / "ci").glob("*-values.yaml")):
    CASES[f"ci/{_file.name}"] = yaml.safe_load(_file.read_text())
CASES["defaults"] = {}


@pytest.mark.parametrize("case", sorted(CASES))
def test_helm_lint_is_clean(helm: Any, case: str) -> None:
    report = helm.lint(str(CHART), CASES[case], strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_validates_against_kubernetes_schemas(chart: Any, kv: Any, case: str) -> None:
    docs, _ = render(chart, CASES[case])
    assert docs
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: no schema in kubernetes-validate; checked in test_service_monitors_select_services
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)  # strict: unknown fields are errors too
            except kv.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {'.'.join(map(str, exc.path))}: "
                            f"{exc.message}")
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("case", sorted(CASES))
def test_pods_are_non_root_read_only_with_requests(chart: Any, case: str) -> None:
    docs, _ = render(chart, CASES[case])
    specs = list(pod_specs(docs))
    assert specs
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False, name
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"]
            if c["name"] != "app":  # the wrapped application's resources are the user's choice
                assert c["resources"]["requests"], (name, c["name"])
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, (name, mount)  # every mount has its volume


@pytest.mark.parametrize("case", sorted(CASES))
def test_secrets_are_referenced_never_inlined(chart: Any, case: str) -> None:
    values = CASES[case]
    docs, raw = render(chart, values)
    existing = values.get("tokens", {}).get("existingSecret")
    secrets = find(docs, "Secret")
    assert len(secrets) == (0 if existing else 1)
    secret_name = existing or f"{RELEASE}-apiward-tokens"
    text = "\n".join(raw.values())
    for literal in (INGEST, READ, ADMIN):
        assert literal not in text  # not even in the Secret (base64 there), nor in NOTES
    for secret in secrets:
        assert secret["metadata"]["name"] == secret_name
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert set(decoded) == {"ingest-token", "read-token", "admin-token", "principal-secret"}
        assert all(len(v) >= 16 for v in decoded.values()) and len(set(decoded.values())) == 4
        if values.get("tokens", {}).get("ingest"):
            assert decoded["ingest-token"] == INGEST
        encoded = set(secret["data"].values())
        others = "\n".join(yaml.safe_dump(d) for d in docs if d is not secret)
        assert not any(v in others for v in encoded)
    for name, spec in pod_specs(docs):
        for c in spec["containers"]:
            for env in c.get("env", []):
                if any(word in env["name"] for word in ("TOKEN", "SECRET", "DATABASE")) and "value" in env:
                    assert env["name"] == "APIWARD_DATABASE" and env["value"].startswith("sqlite:"), (name, env)
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and env["name"] != "APIWARD_DATABASE":
                    assert ref["name"] == secret_name, (name, env)


def test_standalone_sits_in_front_of_the_target_service(chart: Any) -> None:
    docs, raw = render(chart, CASES["standalone"])
    dep = one(docs, "Deployment", "rel-apiward-sensor")
    assert "replicas" not in dep["spec"]  # the HPA owns the replica count
    spec = dep["spec"]["template"]["spec"]
    sensor = container(spec, "apiward-sensor")
    a = args_of(sensor)
    assert a["mode"] == "inline" and a["upstream"] == UPSTREAM and a["listen"] == "0.0.0.0:8080"
    assert a["collector"] == "http://rel-apiward-collector.shop.svc:8000"
    assert {p["name"]: p["containerPort"] for p in sensor["ports"]} == {"proxy": 8080, "sensor-admin": 9090}
    assert sensor["readinessProbe"]["httpGet"]["path"] == "/readyz"
    svc = one(docs, "Service", "rel-apiward-sensor")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
        "proxy": (80, "proxy"), "sensor-admin": (9090, "sensor-admin")}
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    hpa = one(docs, "HorizontalPodAutoscaler", "rel-apiward-sensor")
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rel-apiward-sensor"}
    assert hpa["spec"]["scaleTargetRef"] == target
    assert one(docs, "PodDisruptionBudget", "rel-apiward-sensor")["spec"]["maxUnavailable"] == 1
    assert "rel-apiward-sensor.shop.svc:80" in raw["apiward/templates/NOTES.txt"]
    # the collector: SQLite on a PVC, one writer
    collector = one(docs, "Deployment", "rel-apiward-collector")
    assert collector["spec"]["replicas"] == 1 and collector["spec"]["strategy"]["type"] == "Recreate"
    claim = collector["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert one(docs, "PersistentVolumeClaim", claim)["spec"]["resources"]["requests"]["storage"] == "2Gi"


def test_standalone_options_reach_the_sensor(chart: Any) -> None:
    docs, _ = render(chart, CASES["standalone-full"])
    dep = one(docs, "Deployment", "rel-apiward-sensor")
    assert dep["spec"]["replicas"] == 3 and not find(docs, "HorizontalPodAutoscaler")
    sensor = container(dep["spec"]["template"]["spec"], "apiward-sensor")
    a = args_of(sensor)
    assert a["trusted-proxies"] == "10.0.0.0/8" and a["api-name"] == "orders" and "--enforce" in sensor["args"]
    assert "--analysis-process" in sensor["args"]
    assert a["policies"] == "/etc/apiward/policies"


def policies_checksum(chart: Any, values: dict[str, Any], deployment: str) -> str:
    docs, _ = render(chart, values)
    annotations = one(docs, "Deployment", deployment)["spec"]["template"]["metadata"]["annotations"]
    return str(annotations["checksum/policies"])


@pytest.mark.parametrize(("case", "deployment"), [("standalone-full", "rel-apiward-sensor"),
                                                  ("sidecar-app", "rel-apiward-app")])
def test_policies_configmap_is_mounted_and_a_change_rolls_the_pods(chart: Any, case: str, deployment: str) -> None:
    values = CASES[case]
    docs, _ = render(chart, values)
    (cm,) = find(docs, "ConfigMap")
    assert cm["metadata"]["name"] == "rel-apiward-policies" and cm["data"] == values["policies"]["files"]
    spec = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["apiward-policies"]["configMap"]["name"] == cm["metadata"]["name"]
    mounts = {m["name"]: m for m in container(spec, "apiward-sensor")["volumeMounts"]}
    assert mounts["apiward-policies"]["mountPath"] == "/etc/apiward/policies" and mounts["apiward-policies"]["readOnly"]
    before = policies_checksum(chart, values, deployment)
    (name, text), = values["policies"]["files"].items()
    changed = {**values, "policies": {"files": {name: text + "# changed\n"}}}
    assert policies_checksum(chart, changed, deployment) != before
    assert policies_checksum(chart, values, deployment) == before  # deterministic


def test_sidecar_sits_beside_the_application_and_its_service_targets_the_sensor(chart: Any) -> None:
    docs, _ = render(chart, CASES["sidecar-app"])
    assert not find(docs, "Deployment", "rel-apiward-sensor")  # no standalone sensor in sidecar mode
    dep = one(docs, "Deployment", "rel-apiward-app")
    spec = dep["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app", "apiward-sensor"]
    app = container(spec, "app")
    assert app["image"] == "ghcr.io/acme/orders:1.4" and app["ports"][0]["containerPort"] == 8080
    sensor = container(spec, "apiward-sensor")
    a = args_of(sensor)
    # the sensor forwards to the application over the pod's loopback
    assert a["mode"] == "inline" and a["upstream"] == "http://127.0.0.1:8080" and a["listen"] == "0.0.0.0:15080"
    assert a["admin-listen"] == "0.0.0.0:15090"
    ports = {p["name"]: p["containerPort"] for p in sensor["ports"]}
    svc = one(docs, "Service", "rel-apiward-app")
    http = next(p for p in svc["spec"]["ports"] if p["name"] == "http")
    assert http["targetPort"] == "proxy" and ports["proxy"] == 15080  # clients -> sensor -> app
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["template"]["metadata"]["labels"]["apiward.io/client"] == "true"


def test_sidecar_named_template_works_from_a_parent_chart(helm: Any, tmp_path: Path) -> None:
    parent = tmp_path / "orders"
    (parent / "templates").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "apiward")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: orders\nversion: 1.0.0\n"
        "dependencies:\n  - name: apiward\n    version: 0.1.0\n    repository: file://../apiward\n"
    )
    (parent / "values.yaml").write_text("apiward:\n  sensor:\n    mode: sidecar\n")
    (parent / "templates" / "deployment.yaml").write_text(
        """apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
spec:
  selector:
    matchLabels: {app: orders}
  template:
    metadata:
      labels: {app: orders, apiward.io/client: "true"}
    spec:
      containers:
        - name: orders
          image: ghcr.io/acme/orders:1.4
          ports: [{name: http, containerPort: 3000}]
        {{- include "apiward.sensorSidecar" (dict "ctx" .Subcharts.apiward "appPort" 3000) | nindent 8 }}
      volumes:
        {{- include "apiward.sensorSidecarVolumes" (dict "ctx" .Subcharts.apiward) | nindent 8 }}
"""
    )
    with helm.Chart.load(str(parent)) as loaded:
        docs, _ = render(loaded, {})
    spec = one(docs, "Deployment", "orders")["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["orders", "apiward-sensor"]
    sensor = container(spec, "apiward-sensor")
    assert args_of(sensor)["upstream"] == "http://127.0.0.1:3000"
    assert args_of(sensor)["collector"] == "http://rel-apiward-collector.shop.svc:8000"  # the subchart's collector
    token = next(e for e in sensor["env"] if e["name"] == "APIWARD_INGEST_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == one(docs, "Secret", "rel-apiward-tokens")["metadata"]["name"]
    assert {v["name"] for v in spec["volumes"]} >= {m["name"] for m in sensor["volumeMounts"]}


def test_mirror_mode_is_a_receiver(chart: Any) -> None:
    docs, raw = render(chart, CASES["mirror"])
    spec = one(docs, "Deployment", "rel-apiward-sensor")["spec"]["template"]["spec"]
    sensor = container(spec, "apiward-sensor")
    a = args_of(sensor)
    assert a["mode"] == "mirror" and "upstream" not in a and a["trusted-proxies"] == "10.1.0.0/16"
    svc = one(docs, "Service", "rel-apiward-sensor")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]}["mirror"] == (8080, "mirror")
    assert "X-Original-URI" in raw["apiward/templates/NOTES.txt"]


@pytest.mark.parametrize(("setting", "flags"), [(None, set()), ("auto", set()), (True, {"--analysis-process"}),
                                                (False, {"--no-analysis-process"})])
def test_analysis_process_auto_by_default_or_forced(chart: Any, setting: Any, flags: set[str]) -> None:
    """auto (the default) leaves the choice to the sensor (two usable CPUs under the container's limit);
    true / false force it, in mirror mode too."""
    values: dict[str, Any] = {"sensor": {"mode": "mirror"}}
    if setting is not None:
        values["sensor"]["analysisProcess"] = setting
    docs, _ = render(chart, values)
    sensor = container(one(docs, "Deployment", "rel-apiward-sensor")["spec"]["template"]["spec"], "apiward-sensor")
    assert {a for a in sensor["args"] if "analysis-process" in a} == flags


def test_postgresql_collector_scales_out_with_the_url_from_a_secret(chart: Any) -> None:
    docs, _ = render(chart, CASES["postgresql"])
    dep = one(docs, "Deployment", "rel-apiward-collector")
    assert dep["spec"]["replicas"] == 3 and "strategy" not in dep["spec"]  # rolling updates are fine
    assert not find(docs, "PersistentVolumeClaim")
    env = {e["name"]: e for e in container(dep["spec"]["template"]["spec"], "collector")["env"]}
    assert env["APIWARD_DATABASE"]["valueFrom"]["secretKeyRef"] == {"name": "apiward-db", "key": "database-url"}
    assert env["APIWARD_READ_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "apiward-tokens-from-vault"


def test_external_collector_without_the_in_chart_one(chart: Any) -> None:
    docs, _ = render(chart, CASES["external-collector"])
    assert not find(docs, "Deployment", "rel-apiward-collector") and not find(docs, "NetworkPolicy")
    sensor = container(one(docs, "Deployment", "rel-apiward-sensor")["spec"]["template"]["spec"], "apiward-sensor")
    assert args_of(sensor)["collector"] == "https://apiward.example.com"


@pytest.mark.parametrize("case", ["standalone-full", "mirror"])
def test_service_monitors_select_services_and_their_ports(chart: Any, case: str) -> None:
    docs, _ = render(chart, CASES[case])
    monitors = find(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"rel-apiward-collector", "rel-apiward-sensor"}
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in find(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()]
        assert len(services) == 1, monitor["metadata"]["name"]
        port_names = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
    if case == "standalone-full":
        assert all(m["metadata"]["labels"]["release"] == "prometheus" for m in monitors)


@pytest.mark.parametrize("case", ["standalone", "mirror", "sidecar-app"])
def test_network_policies_admit_sensors_and_name_real_ports(chart: Any, case: str) -> None:
    docs, _ = render(chart, CASES[case])
    policies = {p["metadata"]["name"]: p for p in find(docs, "NetworkPolicy")}
    collector_policy = policies["rel-apiward-collector"]
    peers = collector_policy["spec"]["ingress"][0]["from"]
    assert peers[0]["podSelector"]["matchLabels"] == {"apiward.io/client": "true"}
    # every pod that talks to the collector carries the label the policy admits
    senders = [d for d in find(docs, "Deployment")
               if any("collector" in args_of(c) for c in d["spec"]["template"]["spec"]["containers"])]
    assert senders
    for dep in senders:
        assert dep["spec"]["template"]["metadata"]["labels"].get("apiward.io/client") == "true", dep["metadata"]["name"]
    for policy in policies.values():
        selector = policy["spec"]["podSelector"]["matchLabels"]
        (dep,) = [d for d in find(docs, "Deployment") if selector.items() <=
                  d["spec"]["template"]["metadata"]["labels"].items()]
        names = {p["name"] for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for rule in policy["spec"]["ingress"]:
            for port in rule["ports"]:
                assert port["port"] in names, (policy["metadata"]["name"], port)


@pytest.mark.parametrize("case", ["standalone", "mirror", "sidecar-app"])
def test_helm_test_pod_probes_every_health_endpoint(chart: Any, case: str) -> None:
    docs, _ = render(chart, CASES[case])
    pod = one(docs, "Pod", "rel-apiward-test-connection")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["labels"]["apiward.io/client"] == "true"  # admitted by the collector's policy
    probe = pod["spec"]["containers"][0]
    assert probe["command"][:2] == ["python", "-c"] and pod["spec"]["restartPolicy"] == "Never"
    urls = probe["args"]
    assert "http://rel-apiward-collector.shop.svc:8000/healthz" in urls
    expected = {"standalone": "http://rel-apiward-sensor.shop.svc:9090/healthz",
                "mirror": "http://rel-apiward-sensor.shop.svc:9090/healthz",
                "sidecar-app": "http://rel-apiward-app.shop.svc:15090/healthz"}[case]
    assert expected in urls
    for url in urls:  # every probed port is a Service port
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        svc = one(docs, "Service", host.split(".", 1)[0])
        assert int(port) in {p["port"] for p in svc["spec"]["ports"]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sensor": {"mode": "gateway"}}, "value must be one of 'standalone', 'sidecar', 'mirror'"),
        ({"sensor": {"mode": "standalone", "upstream": ""}}, "upstream"),
        ({"sensor": {"mode": "standalone", "upstream": "orders:8080"}}, "upstream"),
        ({"sensor": {"mode": "mirror"}, "collector": {"replicas": 2}}, "replicas"),
        ({"sensor": {"mode": "mirror", "trustedProxies": ["not a cidr"]}}, "trustedProxies"),
        ({"sensor": {"mode": "mirror", "tpyo": 1}}, "tpyo"),
        ({"sensor": {"mode": "mirror", "analysisProcess": "sometimes"}}, "analysisProcess"),
        ({"sensor": {"mode": "mirror"}, "tokens": {"ingest": "short"}}, "ingest"),
    ],
)
def test_schema_rejects_bad_values(chart: Any, helm: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sensor": {"mode": "mirror"}, "collector": {"database": {"type": "postgresql"}}},
         "existingSecret is required"),
        ({"sensor": {"mode": "sidecar", "sidecar": {"port": 8080, "app": {"image": {"repository": "x/y"},
                                                                         "port": 8080}}}}, "sensor's sidecar port"),
        ({"sensor": {"mode": "mirror"}, "collector": {"enabled": False}}, "externalUrl is required"),
    ],
)
def test_templates_refuse_inconsistent_values(chart: Any, helm: Any, values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
