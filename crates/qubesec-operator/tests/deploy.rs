//! The install manifests in `deploy/` against a real kube-apiserver + etcd.
//!
//! - Every kustomize overlay (`deploy/kustomize/overlays/*`, plus the namespaced
//!   one moved into another namespace) and the Helm chart with several value
//!   sets render, and `kubectl apply --dry-run=server --validate=strict` accepts
//!   every object; `helm lint --strict` passes; the chart's RBAC is the
//!   kustomize RBAC (which the operator runs under in these tests and `e2e.rs`).
//! - `values.schema.json` and the chart's checks reject bad values with a
//!   message that names the value.
//! - Tenant isolation: the operator installed by the namespaced overlay in
//!   `team-a`, running as its ServiceAccount, makes a key pair there; a tenant
//!   ServiceAccount that can edit `team-b` can neither read that key's Secret
//!   nor make either operator (namespaced, or cluster-wide without
//!   `--allow-cross-namespace-refs`) use the key from `team-b`; and even with
//!   the flag, no resource kind reads a Secret that did not opt in
//!   (`qubesec.io/input=true`) or a private key, and a CA key signs no chosen bytes.
//!
//! Needs the control-plane binaries, kubectl and helm (`cargo xtask testenv
//! build`, or `QUBESEC_TESTENV_DIR`); without them the tests fail, they never
//! skip. `--validate=strict` makes the apiserver reject unknown fields, so a
//! typo in a manifest fails here rather than being dropped at install time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use qubesec_operator::crd::{QuantumDecapsulateSecret, QuantumEncapsulateSecret, QuantumKEMKeyPair, is_ready};
use qubesec_operator::{Config, Context};
use qubesec_testenv::ControlPlane;
use serde::Deserialize;
use serde_json::{Value, json};
use support::{TIMEOUT, impersonating, wait_for};
use tokio::task::JoinHandle;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn overlay(name: &str) -> PathBuf {
    repo().join("deploy/kustomize/overlays").join(name)
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/qubesec")
}

/// What a command printed, and whether it succeeded.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` (feeding `stdin`), without stalling the test's runtime.
fn run(mut cmd: Command, stdin: Option<&str>) -> Ran {
    let shown = format!("{cmd:?}");
    let out = tokio::task::block_in_place(|| {
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    });
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// kubectl and helm from `cargo xtask testenv build`; panics with the build hint when missing.
struct Tools {
    kubectl: PathBuf,
    helm: PathBuf,
    /// Private HOME-like directory for helm's config/cache and kubectl's discovery cache.
    home: PathBuf,
}

impl Tools {
    fn new(home: &Path) -> Self {
        let kubectl = qubesec_testenv::kubectl_path().unwrap();
        let helm = qubesec_testenv::helm_path().unwrap();
        std::fs::create_dir_all(home).unwrap();
        Self { kubectl, helm, home: home.to_path_buf() }
    }

    fn kubectl(&self, cp: Option<&ControlPlane>) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env_remove("KUBECONFIG").env("HOME", &self.home);
        if let Some(cp) = cp {
            cmd.arg("--kubeconfig").arg(cp.kubeconfig_path()).arg("--cache-dir").arg(self.home.join("kube-cache"));
        }
        cmd
    }

    fn helm(&self) -> Command {
        let mut cmd = Command::new(&self.helm);
        cmd.env_remove("KUBECONFIG")
            .env("HOME", &self.home)
            .env("HELM_CACHE_HOME", self.home.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.home.join("helm/config"))
            .env("HELM_DATA_HOME", self.home.join("helm/data"));
        cmd
    }

    /// `kubectl kustomize dir`.
    fn kustomize(&self, dir: &Path) -> String {
        let mut cmd = self.kubectl(None);
        cmd.arg("kustomize").arg(dir);
        let ran = run(cmd, None);
        assert!(ran.ok, "kubectl kustomize {} failed:\n{}", dir.display(), ran.stderr);
        ran.stdout
    }

    /// `helm template` of the chart into `namespace` with `--set` values (and the CRDs).
    fn template(&self, namespace: &str, values: &[&str]) -> Ran {
        let mut cmd = self.helm();
        cmd.args(["template", "qubesec"]).arg(chart()).args(["--namespace", namespace, "--include-crds"]);
        for v in values {
            cmd.args(["--set", v]);
        }
        run(cmd, None)
    }

    /// `kubectl apply --dry-run=server --validate=strict` of `yaml`; returns kubectl's output.
    fn dry_run(&self, cp: &ControlPlane, what: &str, yaml: &str) -> Ran {
        let mut cmd = self.kubectl(Some(cp));
        cmd.args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"]);
        let ran = run(cmd, Some(yaml));
        if !ran.stderr.trim().is_empty() {
            eprintln!("deploy: {what}: kubectl said on stderr:\n{}", ran.stderr.trim_end());
        }
        ran
    }

    /// Dry-runs `yaml` and checks the apiserver accepted every one of its objects.
    fn assert_dry_run(&self, cp: &ControlPlane, what: &str, yaml: &str) {
        let ran = self.dry_run(cp, what, yaml);
        assert!(ran.ok, "{what}: kubectl apply --dry-run=server failed:\n{}\n{}", ran.stdout, ran.stderr);
        let accepted = ran.stdout.lines().filter(|l| l.ends_with("(server dry run)")).count();
        let objects = docs(yaml).len();
        assert_eq!(
            accepted, objects,
            "{what}: {objects} objects rendered, but the apiserver reported:\n{}",
            ran.stdout
        );
        eprintln!("deploy: {what}: {objects} objects accepted by the apiserver (server dry run)");
    }

    /// `kubectl apply` for real.
    fn apply(&self, cp: &ControlPlane, args: &[&str], yaml: Option<&str>) {
        let mut cmd = self.kubectl(Some(cp));
        cmd.arg("apply").args(args);
        let ran = run(cmd, yaml);
        assert!(ran.ok, "kubectl apply {args:?} failed:\n{}\n{}", ran.stdout, ran.stderr);
    }
}

/// The objects of a multi-document YAML stream (empty documents dropped).
fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", kinds(docs)))
}

fn kinds(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap()))
        .collect()
}

fn count(docs: &[Value], kind: &str) -> usize {
    docs.iter().filter(|d| d["kind"] == kind).count()
}

fn args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

async fn create_namespace(client: &Client, name: &str) {
    let ns =
        Namespace { metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() }, ..Default::default() };
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
}

/// Reduced copies of the Prometheus Operator's ServiceMonitor and PrometheusRule CRDs: the fields
/// the chart uses, with their upstream types, and no others, so strict validation catches a typo.
const MONITORING_CRDS: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [selector]
              properties:
                jobLabel: {type: string}
                selector:
                  type: object
                  properties:
                    matchLabels: {type: object, additionalProperties: {type: string}}
                namespaceSelector:
                  type: object
                  properties:
                    any: {type: boolean}
                    matchNames: {type: array, items: {type: string}}
                endpoints:
                  type: array
                  items:
                    type: object
                    properties:
                      port: {type: string}
                      path: {type: string}
                      scheme: {type: string}
                      interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                      honorLabels: {type: boolean}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              properties:
                groups:
                  type: array
                  items:
                    type: object
                    required: [name]
                    properties:
                      name: {type: string, minLength: 1}
                      interval: {type: string}
                      rules:
                        type: array
                        items:
                          type: object
                          required: [expr]
                          properties:
                            alert: {type: string}
                            record: {type: string}
                            expr: {x-kubernetes-int-or-string: true}
                            for: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                            labels: {type: object, additionalProperties: {type: string}}
                            annotations: {type: object, additionalProperties: {type: string}}
"#;

async fn wait_established(client: &Client, names: &[&str]) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        tokio::time::timeout(TIMEOUT, await_condition(crds.clone(), name, conditions::is_crd_established()))
            .await
            .unwrap_or_else(|_| panic!("CRD {name} not established"))
            .unwrap();
    }
}

/// Metric families the operator exports (`# TYPE name type` lines), from its own registry with
/// one series recorded in each (an empty family is not exposed).
fn operator_metric_families() -> Vec<(String, String)> {
    let m = qubesec_operator::Metrics::new();
    m.reconciled("certificate", "success", Duration::from_millis(1));
    m.reconcile_error("certificate", "transient");
    m.crypto("sign", "ML-DSA-65", || ());
    let now = std::time::SystemTime::now();
    m.certificate("ns", "web", now, now);
    m.key("kemkeypair", "ns", "alice", "ML-KEM-768", 1);
    m.rotated("kemkeypair");
    m.set_leader(true);
    m.encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// Whether series `name` (e.g. `qubesec_reconcile_errors_total`) belongs to a registered family.
fn is_operator_series(families: &[(String, String)], name: &str) -> bool {
    families.iter().any(|(family, kind)| {
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        suffixes.iter().any(|s| name == format!("{family}{s}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_overlays_and_helm_chart_pass_server_side_dry_run() {
    let started = Instant::now();
    let cp = ControlPlane::start_default().await.unwrap();
    let tools = Tools::new(&cp.dir().join("tools-home"));
    let client = cp.client();
    // Dry runs do not create anything, so the namespaces the objects live in must exist
    // (created as `kubectl apply` would, so applying the overlays' Namespace is not a warning).
    for ns in ["qubesec-system", "team-a"] {
        let mut create = tools.kubectl(Some(&cp));
        create.args(["create", "namespace", ns, "--save-config"]);
        let ran = run(create, None);
        assert!(ran.ok, "kubectl create namespace {ns}: {}", ran.stderr);
    }

    // The dry run is a real check: an unknown field fails it.
    let typo = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  namespace: qubesec-system\ndatta: {}\n";
    let ran = tools.dry_run(&cp, "negative control", typo);
    assert!(!ran.ok && ran.stderr.contains("unknown field"), "strict validation let a typo through: {}", ran.stderr);

    // 1. kustomize: the three overlays.
    let cluster = tools.kustomize(&overlay("cluster-wide"));
    let cluster_docs = docs(&cluster);
    assert_eq!(count(&cluster_docs, "CustomResourceDefinition"), 9, "{:?}", kinds(&cluster_docs));
    find(&cluster_docs, "Namespace", "qubesec-system");
    let cluster_role = find(&cluster_docs, "ClusterRole", "qubesec-operator");
    find(&cluster_docs, "ClusterRoleBinding", "qubesec-operator");
    let leader_role = find(&cluster_docs, "Role", "qubesec-operator-leader-election");
    let deployment = find(&cluster_docs, "Deployment", "qubesec-operator");
    assert_eq!(count(&cluster_docs, "Role"), 1, "cluster-wide mode has only the leader-election Role");
    assert_eq!(container(deployment)["image"], "ghcr.io/qubesec/qubesec-operator:0.1.0");
    assert_eq!(args(deployment), ["--log-json", "--leader-elect", "--metrics-addr", "0.0.0.0:8080"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    find(&cluster_docs, "Service", "qubesec-operator-metrics");
    find(&cluster_docs, "PodDisruptionBudget", "qubesec-operator");
    tools.assert_dry_run(&cp, "overlays/cluster-wide", &cluster);

    let namespaced = tools.kustomize(&overlay("namespaced"));
    let namespaced_docs = docs(&namespaced);
    assert_eq!(count(&namespaced_docs, "CustomResourceDefinition"), 0, "CRDs are a cluster admin's, once");
    assert_eq!(count(&namespaced_docs, "ClusterRole") + count(&namespaced_docs, "ClusterRoleBinding"), 0);
    assert_eq!(count(&namespaced_docs, "Namespace"), 0);
    let ns_role = find(&namespaced_docs, "Role", "qubesec-operator");
    assert_eq!(ns_role["rules"], cluster_role["rules"], "the namespaced Role grants what the ClusterRole does");
    assert_eq!(
        args(find(&namespaced_docs, "Deployment", "qubesec-operator")),
        ["--log-json", "--leader-elect", "--metrics-addr", "0.0.0.0:8080", "--namespace=$(POD_NAMESPACE)"]
    );
    tools.assert_dry_run(&cp, "overlays/namespaced", &namespaced);

    // The namespaced overlay moved into team-a, as docs/install.md shows.
    let moved = tenant_overlay(&cp, "team-a");
    let moved = tools.kustomize(&moved);
    let moved_docs = docs(&moved);
    for d in &moved_docs {
        assert_eq!(d["metadata"]["namespace"], "team-a", "{d}");
    }
    for name in ["qubesec-operator", "qubesec-operator-leader-election"] {
        assert_eq!(find(&moved_docs, "RoleBinding", name)["subjects"][0]["namespace"], "team-a");
    }
    tools.assert_dry_run(&cp, "overlays/namespaced in team-a", &moved);

    let kms = tools.kustomize(&overlay("with-kms"));
    let kms_docs = docs(&kms);
    assert_eq!(kms_docs.len(), cluster_docs.len() + 1, "with-kms is cluster-wide plus one ConfigMap");
    let files = find(&kms_docs, "ConfigMap", "qubesec-kms-node-files");
    assert_eq!(files["metadata"]["namespace"], "kube-system");
    for file in ["qubesec-kms.yaml", "encryption-config.yaml"] {
        let want = std::fs::read_to_string(repo().join("deploy/kms").join(file)).unwrap();
        assert_eq!(
            files["data"][file].as_str(),
            Some(want.as_str()),
            "{file} in the ConfigMap differs from deploy/kms"
        );
    }
    tools.assert_dry_run(&cp, "overlays/with-kms", &kms);
    eprintln!("deploy: kustomize overlays done at {:.1} s", started.elapsed().as_secs_f64());

    // 2. Helm: lint, then several value sets.
    let mut lint = tools.helm();
    lint.args(["lint", "--strict"]).arg(chart());
    let ran = run(lint, None);
    assert!(ran.ok, "helm lint --strict failed:\n{}\n{}", ran.stdout, ran.stderr);

    let render = |namespace: &str, values: &[&str]| {
        let ran = tools.template(namespace, values);
        assert!(ran.ok, "helm template {values:?} failed:\n{}", ran.stderr);
        ran.stdout
    };

    let defaults = render("qubesec-system", &[]);
    let d = docs(&defaults);
    assert_eq!(count(&d, "CustomResourceDefinition"), 9);
    for (name, yaml) in qubesec_operator::crd::manifests().unwrap() {
        let crd_name = name.trim_end_matches(".yaml");
        let ours: Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(find(&d, "CustomResourceDefinition", crd_name), &ours, "the chart's {name} is stale");
    }
    assert_eq!(find(&d, "ClusterRole", "qubesec")["rules"], cluster_role["rules"], "chart and kustomize RBAC differ");
    find(&d, "ClusterRoleBinding", "qubesec");
    let helm_leader = find(&d, "Role", "qubesec-leader-election");
    assert_eq!(helm_leader["rules"], leader_role["rules"]);
    let helm_deployment = find(&d, "Deployment", "qubesec");
    assert_eq!(helm_deployment["spec"]["replicas"], 2);
    assert_eq!(container(helm_deployment)["image"], "ghcr.io/qubesec/qubesec-operator:0.1.0");
    assert_eq!(
        args(helm_deployment),
        [
            "--metrics-addr=0.0.0.0:8080",
            "--log-json",
            "--leader-elect",
            "--lease-name=qubesec",
            "--max-concurrent-reconciles=8"
        ]
    );
    for field in ["securityContext", "resources", "livenessProbe", "readinessProbe", "env", "ports"] {
        assert_eq!(container(helm_deployment)[field], container(deployment)[field], "{field} differs from kustomize");
    }
    assert_eq!(
        helm_deployment["spec"]["template"]["spec"]["securityContext"],
        deployment["spec"]["template"]["spec"]["securityContext"]
    );
    find(&d, "PodDisruptionBudget", "qubesec");
    find(&d, "Service", "qubesec-metrics");
    assert_eq!(count(&d, "ServiceMonitor") + count(&d, "PrometheusRule"), 0);
    tools.assert_dry_run(&cp, "helm: defaults", &defaults);
    // `helm install --dry-run=server`: the chart's kubeVersion against the real apiserver, and NOTES.txt.
    let mut install = tools.helm();
    install
        .args(["install", "qubesec"])
        .arg(chart())
        .args(["--namespace", "qubesec-system", "--dry-run=server", "--kubeconfig"])
        .arg(cp.kubeconfig_path());
    let ran = run(install, None);
    assert!(ran.ok, "helm install --dry-run=server failed:\n{}", ran.stderr);
    for want in
        ["NOTES:", "Mode: cluster-wide", "Cross-namespace references are refused", "helm upgrade` does not touch CRDs"]
    {
        assert!(ran.stdout.contains(want), "helm install's output lacks {want:?}:\n{}", ran.stdout);
    }

    let ns_mode = render("qubesec-system", &["watchNamespace=team-a"]);
    let d = docs(&ns_mode);
    assert_eq!(count(&d, "ClusterRole") + count(&d, "ClusterRoleBinding"), 0, "{:?}", kinds(&d));
    let role = find(&d, "Role", "qubesec");
    assert_eq!(role["metadata"]["namespace"], "team-a");
    assert_eq!(role["rules"], ns_role["rules"], "chart and kustomize namespaced RBAC differ");
    let binding = find(&d, "RoleBinding", "qubesec");
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "qubesec", "namespace": "qubesec-system"}])
    );
    assert_eq!(find(&d, "Role", "qubesec-leader-election")["metadata"]["namespace"], "qubesec-system");
    assert!(args(find(&d, "Deployment", "qubesec")).contains(&"--namespace=team-a".to_owned()));
    tools.assert_dry_run(&cp, "helm: watchNamespace=team-a", &ns_mode);

    let single = render("qubesec-system", &["leaderElection.enabled=false", "replicaCount=1"]);
    let d = docs(&single);
    assert_eq!(find(&d, "Deployment", "qubesec")["spec"]["replicas"], 1);
    assert_eq!(
        args(find(&d, "Deployment", "qubesec")),
        ["--metrics-addr=0.0.0.0:8080", "--log-json", "--max-concurrent-reconciles=8"]
    );
    assert_eq!(count(&d, "Role") + count(&d, "RoleBinding"), 0, "no Lease, no Lease permissions");
    assert_eq!(count(&d, "PodDisruptionBudget"), 0, "a PDB on one replica would block node drains");
    tools.assert_dry_run(&cp, "helm: one replica, no leader election", &single);
    let tuned = render("qubesec-system", &["cryptoWorkers=4", "maxConcurrentReconciles=16"]);
    let tuned_args = args(find(&docs(&tuned), "Deployment", "qubesec"));
    for want in ["--crypto-workers=4", "--max-concurrent-reconciles=16"] {
        assert!(tuned_args.contains(&want.to_owned()), "{want} missing: {tuned_args:?}");
    }

    // Monitoring objects: their CRDs must exist for real for the dry run to check them.
    tools.apply(&cp, &["-f", "-"], Some(MONITORING_CRDS));
    wait_established(&client, &["servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"])
        .await;
    let monitored = render(
        "qubesec-system",
        &[
            "metrics.serviceMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "metrics.serviceMonitor.labels.release=kps",
        ],
    );
    let d = docs(&monitored);
    let sm = find(&d, "ServiceMonitor", "qubesec");
    assert_eq!(sm["metadata"]["labels"]["release"], "kps");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["honorLabels"], true);
    let service = find(&d, "Service", "qubesec-metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v, "the ServiceMonitor does not select the Service");
    }
    let rules = find(&d, "PrometheusRule", "qubesec")["spec"]["groups"][0]["rules"].as_array().unwrap().clone();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "QubeSecCertificateExpiringSoon",
            "QubeSecCertificateRenewalOverdue",
            "QubeSecReconcileErrors",
            "QubeSecNoLeader",
            "QubeSecOperatorAbsent"
        ]
    );
    let families = operator_metric_families();
    assert_eq!(families.len(), 9, "{families:?}");
    let operations = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        let series: BTreeSet<&str> = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|t| t.starts_with("qubesec_"))
            .collect();
        assert!(!series.is_empty(), "{expr}");
        for s in series {
            assert!(
                is_operator_series(&families, s),
                "alert {} uses {s}, which the operator does not export",
                rule["alert"]
            );
        }
        assert!(operations.contains(expr), "docs/operations.md does not show the chart's alert expression {expr}");
    }
    assert!(rules[0]["expr"].as_str().unwrap().contains("< 7 * 86400"), "{}", rules[0]["expr"]);
    tools.assert_dry_run(&cp, "helm: ServiceMonitor and PrometheusRule", &monitored);
    eprintln!("deploy: helm value sets done at {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn helm_values_schema_rejects_bad_values() {
    let home = std::env::temp_dir().join(format!("qubesec-deploy-schema-{}", std::process::id()));
    let tools = Tools::new(&home);
    let ok = tools.template("qubesec-system", &[]);
    assert!(ok.ok, "the defaults must render: {}", ok.stderr);
    let cases: [(&[&str], &[&str]); 10] = [
        (&["cryptoWorkers=-1"], &["cryptoWorkers", "minimum"]),
        (&["maxConcurrentReconciles=0"], &["maxConcurrentReconciles", "minimum"]),
        (&["replicaCount=-1"], &["replicaCount", "minimum"]),
        (&["leaderElection.bogus=true"], &["leaderElection", "bogus"]),
        (&["replicas=3"], &["additional properties", "replicas"]),
        (&["image.pullPolicy=Sometimes"], &["pullPolicy"]),
        (&["watchNamespace=Team_A"], &["watchNamespace"]),
        (&["metrics.port=70000"], &["port"]),
        (&["leaderElection.enabled=false"], &["replicaCount is 2 but leaderElection.enabled is false"]),
        (
            &["watchNamespace=team-a", "allowCrossNamespaceRefs=true"],
            &["allowCrossNamespaceRefs needs cluster-wide mode"],
        ),
    ];
    for (values, wanted) in cases {
        let ran = tools.template("qubesec-system", values);
        assert!(!ran.ok, "helm template accepted {values:?}");
        for w in wanted {
            assert!(ran.stderr.contains(w), "helm's error for {values:?} does not mention {w:?}:\n{}", ran.stderr);
        }
        eprintln!("deploy: {values:?} rejected: {}", ran.stderr.trim().replace('\n', " | "));
    }
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn kms_component_carries_deploy_kms_verbatim() {
    for file in ["qubesec-kms.yaml", "encryption-config.yaml"] {
        let original = std::fs::read_to_string(repo().join("deploy/kms").join(file)).unwrap();
        let copy = std::fs::read_to_string(repo().join("deploy/kustomize/components/kms").join(file)).unwrap();
        assert!(
            copy == original,
            "deploy/kustomize/components/kms/{file} differs from deploy/kms/{file}: copy it over"
        );
    }
}

/// A kustomization in the control plane's directory that moves the namespaced overlay into `ns`.
fn tenant_overlay(cp: &ControlPlane, ns: &str) -> PathBuf {
    let dir = cp.dir().join(format!("overlay-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    // kustomize takes relative paths only.
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\nresources:\n  - {}\n",
        relative(&dir.canonicalize().unwrap(), &overlay("namespaced")).display()
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).unwrap();
    dir
}

/// `to` as a path relative to the directory `from` (both absolute).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let common = from.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in from.components().skip(common) {
        path.push("..");
    }
    to.components().skip(common).for_each(|c| path.push(c));
    path
}

fn start_operator(client: &Client, config: Config) -> JoinHandle<()> {
    let ctx: Arc<Context> = Context::new(client.clone(), config);
    tokio::spawn(qubesec_operator::controllers::run(ctx))
}

/// The HTTP status of a failed API call (403 Forbidden, ...), or a panic if it succeeded.
fn status_of<T: Debug>(result: kube::Result<T>, what: &str) -> u16 {
    match result {
        Ok(v) => panic!("{what} succeeded, it must not: {v:?}"),
        Err(kube::Error::Api(status)) => status.code,
        Err(e) => panic!("{what} failed, but not with an API status: {e}"),
    }
}

fn obj<K: serde::de::DeserializeOwned>(kind: &str, ns: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "qubesec.io/v1", "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec
    }))
    .unwrap()
}

fn denied(status: Option<&qubesec_operator::crd::CommonStatus>) -> bool {
    status.and_then(|s| s.ready()).is_some_and(|c| c.status == "False" && c.reason == "CrossNamespaceRefDenied")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_install_isolates_tenants() {
    let started = Instant::now();
    let cp = ControlPlane::start_default().await.unwrap();
    let tools = Tools::new(&cp.dir().join("tools-home"));
    let admin = cp.client();

    // The CRDs as a cluster admin installs them (through deploy/crds/Kustomization), then
    // the namespaced overlay moved into team-a, for real.
    let crds_dir = repo().join("deploy/crds");
    tools.apply(&cp, &["-k", crds_dir.to_str().unwrap()], None);
    let crd_names: Vec<String> =
        qubesec_operator::crd::all().iter().map(|c| c.metadata.name.clone().unwrap()).collect();
    wait_established(&admin, &crd_names.iter().map(String::as_str).collect::<Vec<_>>()).await;
    for ns in ["team-a", "team-b"] {
        create_namespace(&admin, ns).await;
    }
    let rendered = tools.kustomize(&tenant_overlay(&cp, "team-a"));
    tools.apply(&cp, &["-f", "-"], Some(&rendered));

    // The operator, as team-a's qubesec-operator ServiceAccount, watching team-a only.
    let op_a = impersonating(&cp, "system:serviceaccount:team-a:qubesec-operator").await;
    let op_a_secrets_b: Api<Secret> = Api::namespaced(op_a.clone(), "team-b");
    assert_eq!(status_of(op_a_secrets_b.get("anything").await, "the team-a operator reading a team-b Secret"), 403);
    assert_eq!(status_of(op_a_secrets_b.list(&ListParams::default()).await, "the team-a operator listing team-b"), 403);
    let stray = Secret {
        metadata: ObjectMeta { name: Some("written-by-operator".into()), ..ObjectMeta::default() },
        ..Secret::default()
    };
    assert_eq!(
        status_of(
            op_a_secrets_b
                .patch("written-by-operator", &PatchParams::apply("qubesec-operator"), &Patch::Apply(&stray))
                .await,
            "the team-a operator writing a team-b Secret"
        ),
        403
    );
    assert_eq!(
        status_of(Api::<Secret>::all(op_a.clone()).list(&ListParams::default()).await, "listing all Secrets"),
        403
    );
    let namespaced_operator = start_operator(&op_a, Config { namespace: Some("team-a".into()), ..Config::default() });

    let kps_a: Api<QuantumKEMKeyPair> = Api::namespaced(admin.clone(), "team-a");
    kps_a
        .create(
            &PostParams::default(),
            &obj("QuantumKEMKeyPair", "team-a", "alice-kem", json!({"algorithm": "ML-KEM-768"})),
        )
        .await
        .unwrap();
    wait_for(&kps_a, "alice-kem", "Ready", |k| is_ready(k.status.as_ref().map(|s| &s.common), k.metadata.generation))
        .await;
    let secrets_a: Api<Secret> = Api::namespaced(admin.clone(), "team-a");
    let private_key = secrets_a.get("alice-kem").await.unwrap().data.unwrap()["private_key"].clone();
    assert_eq!(private_key.0.len(), 64, "the operator stored the ML-KEM seed");
    eprintln!("deploy: the namespaced operator made team-a's key pair at {:.1} s", started.elapsed().as_secs_f64());

    // A tenant: a ServiceAccount in team-b that may do anything with Secrets, ConfigMaps and
    // qubesec.io resources in team-b (what `edit` grants there), and nothing elsewhere.
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some("tenant".into()), ..ObjectMeta::default() },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(admin.clone(), "team-b").create(&PostParams::default(), &sa).await.unwrap();
    let role = Role {
        metadata: ObjectMeta { name: Some("tenant-edit".into()), ..ObjectMeta::default() },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new(), "qubesec.io".into()]),
            resources: Some(vec!["secrets".into(), "configmaps".into(), "*".into()]),
            verbs: vec!["*".into()],
            ..PolicyRule::default()
        }]),
    };
    Api::<Role>::namespaced(admin.clone(), "team-b").create(&PostParams::default(), &role).await.unwrap();
    let binding = RoleBinding {
        metadata: ObjectMeta { name: Some("tenant-edit".into()), ..ObjectMeta::default() },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "tenant-edit".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "tenant".into(),
            namespace: Some("team-b".into()),
            ..Subject::default()
        }]),
    };
    Api::<RoleBinding>::namespaced(admin.clone(), "team-b").create(&PostParams::default(), &binding).await.unwrap();
    let tenant = impersonating(&cp, "system:serviceaccount:team-b:tenant").await;

    // The tenant's own namespace works (so the refusals below are about team-a, not a broken client)...
    Api::<Secret>::namespaced(tenant.clone(), "team-b").list(&ListParams::default()).await.unwrap();
    // ...team-a's key material does not.
    let tenant_secrets_a: Api<Secret> = Api::namespaced(tenant.clone(), "team-a");
    assert_eq!(status_of(tenant_secrets_a.get("alice-kem").await, "the tenant reading team-a's private key"), 403);
    assert_eq!(
        status_of(tenant_secrets_a.list(&ListParams::default()).await, "the tenant listing team-a's Secrets"),
        403
    );
    let tenant_kps_a: Api<QuantumKEMKeyPair> = Api::namespaced(tenant.clone(), "team-a");
    assert_eq!(status_of(tenant_kps_a.get("alice-kem").await, "the tenant reading team-a's key pair"), 403);
    let tenant_decaps_a: Api<QuantumDecapsulateSecret> = Api::namespaced(tenant.clone(), "team-a");
    let inside: QuantumDecapsulateSecret = obj(
        "QuantumDecapsulateSecret",
        "team-a",
        "inside-job",
        json!({"keyPairRef": {"name": "alice-kem"}, "ciphertext": ciphertext_b64()}),
    );
    assert_eq!(
        status_of(tenant_decaps_a.create(&PostParams::default(), &inside).await, "the tenant creating in team-a"),
        403
    );

    // The tenant references team-a's key pair from team-b: encapsulating to its public key and
    // decapsulating with its private key.
    let encaps_b: Api<QuantumEncapsulateSecret> = Api::namespaced(tenant.clone(), "team-b");
    let decaps_b: Api<QuantumDecapsulateSecret> = Api::namespaced(tenant.clone(), "team-b");
    let steal_encap: QuantumEncapsulateSecret = obj(
        "QuantumEncapsulateSecret",
        "team-b",
        "steal-encap",
        json!({"publicKeyRef": {"kind": "QuantumKEMKeyPair", "name": "alice-kem", "namespace": "team-a"}}),
    );
    encaps_b.create(&PostParams::default(), &steal_encap).await.unwrap();
    let steal_decap: QuantumDecapsulateSecret = obj(
        "QuantumDecapsulateSecret",
        "team-b",
        "steal-decap",
        json!({"keyPairRef": {"name": "alice-kem", "namespace": "team-a"}, "ciphertext": ciphertext_b64()}),
    );
    decaps_b.create(&PostParams::default(), &steal_decap).await.unwrap();

    // The namespaced operator does not see team-b at all: give it time, nothing happens there.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(encaps_b.get("steal-encap").await.unwrap().status.is_none(), "the team-a operator reconciled team-b");
    assert!(decaps_b.get("steal-decap").await.unwrap().status.is_none(), "the team-a operator reconciled team-b");
    let secrets_b: Api<Secret> = Api::namespaced(admin.clone(), "team-b");
    assert!(secrets_b.get_opt("steal-encap").await.unwrap().is_none());
    assert!(secrets_b.get_opt("steal-decap").await.unwrap().is_none());
    namespaced_operator.abort();

    // 2. A cluster-wide operator (without --allow-cross-namespace-refs), as qubesec-system's
    // ServiceAccount under the cluster-wide overlay's RBAC: it sees team-b and refuses the refs.
    let cluster = tools.kustomize(&overlay("cluster-wide"));
    tools.apply(&cp, &["-f", "-"], Some(&cluster));
    let op_all = impersonating(&cp, "system:serviceaccount:qubesec-system:qubesec-operator").await;
    let cluster_operator = start_operator(&op_all, Config::default());
    let encaps_b_admin: Api<QuantumEncapsulateSecret> = Api::namespaced(admin.clone(), "team-b");
    let decaps_b_admin: Api<QuantumDecapsulateSecret> = Api::namespaced(admin.clone(), "team-b");
    wait_for(&encaps_b_admin, "steal-encap", "CrossNamespaceRefDenied", |e| {
        denied(e.status.as_ref().map(|s| &s.common))
    })
    .await;
    wait_for(&decaps_b_admin, "steal-decap", "CrossNamespaceRefDenied", |d| {
        denied(d.status.as_ref().map(|s| &s.common))
    })
    .await;
    for name in ["steal-encap", "steal-decap"] {
        assert!(secrets_b.get_opt(name).await.unwrap().is_none(), "Secret team-b/{name} was written");
        let cms_b: Api<ConfigMap> = Api::namespaced(admin.clone(), "team-b");
        assert!(cms_b.get_opt(name).await.unwrap().is_none(), "ConfigMap team-b/{name} was written");
    }
    // The second operator took team-a's key over without regenerating it.
    let again = secrets_a.get("alice-kem").await.unwrap().data.unwrap()["private_key"].clone();
    assert!(again == private_key, "team-a's key changed hands and material");
    cluster_operator.abort();

    // 3. The refusal is the flag's doing: with --allow-cross-namespace-refs the same reference
    // is honoured (an admin's explicit choice, which docs/install.md warns about).
    let permissive = start_operator(&op_all, Config { allow_cross_namespace_refs: true, ..Config::default() });
    wait_for(&encaps_b_admin, "steal-encap", "Ready with the flag", |e| {
        is_ready(e.status.as_ref().map(|s| &s.common), e.metadata.generation)
    })
    .await;
    assert!(secrets_b.get_opt("steal-encap").await.unwrap().is_some());

    // 4. Even then (cross-namespace references allowed), no resource kind reads a Secret that
    // did not opt in with qubesec.io/input=true, nor a private key qubesec made: the tenant
    // points every kind that takes a Secret at team-a's database password and at its KEM key.
    let password = Secret {
        metadata: ObjectMeta { name: Some("db-password".into()), ..ObjectMeta::default() },
        data: Some(std::collections::BTreeMap::from([(
            "password".into(),
            k8s_openapi::ByteString(b"hunter2".to_vec()),
        )])),
        ..Secret::default()
    };
    secrets_a.create(&PostParams::default(), &password).await.unwrap();
    let pw = json!({"kind": "Secret", "name": "db-password", "namespace": "team-a", "key": "password"});
    let attempts = [
        (
            "QuantumDerivedKey",
            "read-pw",
            json!({"sharedSecretRef": {"name": "db-password", "namespace": "team-a", "key": "password"}}),
            "InputNotOptedIn",
        ),
        (
            "QuantumSignMessage",
            "sign-pw",
            json!({"keyPairRef": {"name": "tenant-signer"}, "messageRef": pw}),
            "InputNotOptedIn",
        ),
        (
            "QuantumVerifySignature",
            "guess-pw",
            json!({"publicKeyRef": {"name": "tenant-signer"}, "messageRef": pw, "signature": "AAAA"}),
            "InputNotOptedIn",
        ),
        (
            "QuantumVerifySignature",
            "sig-pw",
            json!({"publicKeyRef": {"name": "tenant-signer"}, "message": "m", "signatureRef": pw}),
            "InputNotOptedIn",
        ),
        (
            "QuantumDecapsulateSecret",
            "decap-pw",
            json!({"keyPairRef": {"name": "tenant-kem"}, "ciphertextRef": pw}),
            "InputNotOptedIn",
        ),
        (
            "QuantumDerivedKey",
            "read-key",
            json!({"sharedSecretRef": {"name": "alice-kem", "namespace": "team-a", "key": "private_key"}}),
            "InputNotAllowed",
        ),
    ];
    let tenant_dyn = |kind: &str| {
        kube::Api::<kube::api::DynamicObject>::namespaced_with(
            tenant.clone(),
            "team-b",
            &kube::api::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("qubesec.io", "v1", kind)),
        )
    };
    for (kind, name, spec) in [
        ("QuantumSignatureKeyPair", "tenant-signer", json!({"algorithm": "ML-DSA-44"})),
        ("QuantumKEMKeyPair", "tenant-kem", json!({"algorithm": "ML-KEM-512"})),
    ] {
        tenant_dyn(kind).create(&PostParams::default(), &obj(kind, "team-b", name, spec)).await.unwrap();
    }
    for (kind, name, spec, _) in &attempts {
        tenant_dyn(kind).create(&PostParams::default(), &obj(kind, "team-b", name, spec.clone())).await.unwrap();
    }
    let reason_of =
        |o: &kube::api::DynamicObject| o.data["status"]["conditions"][0]["reason"].as_str().map(str::to_owned);
    for (kind, name, _, reason) in &attempts {
        let o = wait_for(&tenant_dyn(kind), name, reason, |o| reason_of(o).as_deref() == Some(*reason)).await;
        eprintln!("deploy: tenant {kind} {name}: {}", o.data["status"]["error"]);
    }
    let cms_b: Api<ConfigMap> = Api::namespaced(admin.clone(), "team-b");
    for name in ["read-pw", "decap-pw", "read-key"] {
        assert!(secrets_b.get_opt(name).await.unwrap().is_none(), "Secret team-b/{name} was written");
    }
    assert!(cms_b.get_opt("sign-pw").await.unwrap().is_none(), "a signature over the password was published");
    for name in ["guess-pw", "sig-pw"] {
        let v = tenant_dyn("QuantumVerifySignature").get(name).await.unwrap();
        assert!(v.data["status"]["result"].is_null(), "{name} answered whether a guess matches the password");
    }

    // 5. A CA key is only a CA key: the tenant cannot have team-a's CA key sign bytes it chooses.
    let team_a = |kind: &str| {
        kube::Api::<kube::api::DynamicObject>::namespaced_with(
            admin.clone(),
            "team-a",
            &kube::api::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk("qubesec.io", "v1", kind)),
        )
    };
    team_a("QuantumSignatureKeyPair")
        .create(
            &PostParams::default(),
            &obj(
                "QuantumSignatureKeyPair",
                "team-a",
                "ca-key",
                json!({"algorithm": "ML-DSA-65", "purpose": "CertificateAuthority"}),
            ),
        )
        .await
        .unwrap();
    team_a("QuantumCertificate")
        .create(
            &PostParams::default(),
            &obj(
                "QuantumCertificate",
                "team-a",
                "team-a-ca",
                json!({"subject": "CN=Team A CA", "isCA": true, "keyPairRef": {"name": "ca-key"}}),
            ),
        )
        .await
        .unwrap();
    let ready_obj =
        |o: &kube::api::DynamicObject| reason_of(o).is_some() && o.data["status"]["conditions"][0]["status"] == "True";
    wait_for(&team_a("QuantumCertificate"), "team-a-ca", "Ready", ready_obj).await;
    // The TBS of a certificate naming the tenant as a CA would be "chosen bytes" here.
    let forge = json!({"keyPairRef": {"name": "ca-key", "namespace": "team-a"}, "message": "30820122...tbsCertificate of my choosing"});
    tenant_dyn("QuantumSignMessage")
        .create(&PostParams::default(), &obj("QuantumSignMessage", "team-b", "forge", forge))
        .await
        .unwrap();
    wait_for(&tenant_dyn("QuantumSignMessage"), "forge", "KeyPurposeMismatch", |o| {
        reason_of(o).as_deref() == Some("KeyPurposeMismatch")
    })
    .await;
    assert!(cms_b.get_opt("forge").await.unwrap().is_none(), "team-a's CA key signed the tenant's bytes");
    // Nor can a tenant's own message key become a CA key.
    let err = tenant_dyn("QuantumSignatureKeyPair")
        .patch(
            "tenant-signer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"purpose": "CertificateAuthority"}})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("spec.purpose is immutable"), "{err}");
    permissive.abort();
    eprintln!("deploy: tenant isolation checked in {:.1} s", started.elapsed().as_secs_f64());
}

/// A well-formed ML-KEM-768 ciphertext's size (1088 bytes), base64: the refusals above are about
/// the reference, not a malformed spec.
fn ciphertext_b64() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([7u8; 1088])
}
