//! `cargo xtask demo`: the main job until the control-plane demo exists.

pub(crate) fn run() -> anyhow::Result<()> {
    anyhow::bail!("demo: not yet")
}
