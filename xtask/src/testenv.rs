//! `cargo xtask testenv`: build and run a real control plane. (Being built: issue 4.)

use clap::Subcommand;

/// Test-environment subcommands.
#[derive(Subcommand)]
pub(crate) enum Command {
    /// Build etcd, kube-apiserver and kube-controller-manager into target/testenv.
    Build,
    /// Start a control plane for a person and keep it up until Ctrl-C.
    Up,
}

pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build | Command::Up => anyhow::bail!("testenv is not built yet"),
    }
}
