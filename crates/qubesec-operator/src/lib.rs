#![doc = include_str!("../README.md")]

pub mod cache;
pub mod context;
pub mod controllers;
pub mod crd;
pub mod crypto;
pub mod duration;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod outputs;
pub mod reconcile;

use std::sync::Arc;

pub use context::{Config, Context, MANAGER, Metrics};
pub use error::{Category, Error};

/// Runs all nine controllers on `client` until they stop (they run until the task is dropped).
pub async fn run(client: kube::Client, config: Config) {
    let ctx: Arc<Context> = Context::new(client, config);
    controllers::run(ctx).await;
}
