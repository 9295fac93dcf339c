//! Helpers shared by the integration tests that run against a real control plane.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use qubesec_testenv::ControlPlane;

/// How long a test waits for the operator or the API server before failing.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `name` until `f` holds, failing after [`TIMEOUT`] with the last state seen.
pub(crate) async fn wait_for<K, F>(api: &Api<K>, name: &str, what: &str, f: F) -> K
where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned,
    F: Fn(&K) -> bool,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = api.get_opt(name).await.unwrap();
        if let Some(o) = got.as_ref().filter(|o| f(o)) {
            return o.clone();
        }
        assert!(Instant::now() < deadline, "timed out waiting for {name}: {what}; last: {got:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client acting as `user` (e.g. a ServiceAccount), through the admin kubeconfig's impersonation.
pub(crate) async fn impersonating(cp: &ControlPlane, user: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap()
}

/// The requests a client made, as `METHOD uri | accept`.
pub(crate) type Requests = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A client acting as `user` that counts its requests into `metrics` (`qubesec_kube_requests_total`)
/// and records each one, so a test can check what the operator asked the API server for.
pub(crate) async fn recorded_client(
    cp: &ControlPlane,
    user: &str,
    metrics: &qubesec_operator::Metrics,
) -> (Client, Requests) {
    let kubeconfig = Kubeconfig::read_from(cp.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    let requests = Requests::default();
    let log = requests.clone();
    let record = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        let accept = req.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        log.lock().unwrap().push(format!("{} {} | {accept}", req.method(), req.uri()));
        req
    });
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&metrics.request_layer())
        .with_layer(&record)
        .build();
    (client, requests)
}
