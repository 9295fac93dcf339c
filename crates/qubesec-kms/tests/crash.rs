//! Crash safety of the software keystore: `rotate`, `rotate --stage`,
//! `activate`, `retire` and `import` killed with SIGKILL at random points
//! (200 trials) never leave an unreadable keystore, never lose a key id that
//! existed before (other than the one `retire` was asked to remove), never
//! apply half an operation, and the running server never serves a
//! half-written state. Concurrent writers never lose an update.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KeySource, Plugin, Receiver};
use qubesec_core::KemAlgorithm;
use qubesec_kms::Backend;
use qubesec_kms::backend::software::SoftwareBackend;
use qubesec_kms::keystore::{Keystore, MasterKeySource};

const TRIALS: usize = 200;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    ids: BTreeMap<u32, String>,
    active: u32,
}

fn snapshot(dir: &Path, key: &Path) -> Snapshot {
    let opened = Keystore::at(dir)
        .open(&MasterKeySource::KeyFile(key.to_path_buf()))
        .unwrap_or_else(|e| panic!("keystore unreadable after a crash: {e}"));
    Snapshot {
        ids: opened.keys.versions().map(|k| (k.version(), k.key_id().to_string())).collect(),
        active: opened.keys.active_version(),
    }
}

fn key_args(dir: &Path, key: &Path) -> Vec<String> {
    vec!["--keystore".into(), dir.display().to_string(), "--master-key-file".into(), key.display().to_string()]
}

/// Runs `args` and SIGKILLs it after `delay` unless it finished first.
/// Returns `None` when it was killed mid-run, or how long it took.
fn run_and_kill(args: &[String], delay: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut child = Command::new(common::BIN).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{args:?} failed on its own");
            return Some(started.elapsed());
        }
        if started.elapsed() >= delay {
            let _ = child.kill(); // SIGKILL
            let status = child.wait().unwrap();
            return if status.success() { Some(started.elapsed()) } else { None };
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn timed(args: &[String]) -> Duration {
    let t = Instant::now();
    let out = Command::new(common::BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

/// Ciphertexts sealed under each key id, decrypted again after every trial.
struct Sealed(BTreeMap<String, (Vec<u8>, Vec<u8>)>);

impl Sealed {
    fn add_active(&mut self, dir: &Path, key: &Path, n: usize) {
        let b = SoftwareBackend::open(Keystore::at(dir), &MasterKeySource::KeyFile(key.to_path_buf())).unwrap();
        let plain = format!("sample {n}").into_bytes();
        let s = b.encrypt(&plain).unwrap();
        self.0.entry(s.key_id.to_string()).or_insert((s.ciphertext, plain));
    }

    fn check(&self, dir: &Path, key: &Path, present: &Snapshot, trial: usize) {
        let b = SoftwareBackend::open(Keystore::at(dir), &MasterKeySource::KeyFile(key.to_path_buf())).unwrap();
        for (id, (ct, plain)) in &self.0 {
            if !present.ids.values().any(|i| i == id) {
                continue;
            }
            let key_id = qubesec_kms::KeyId::parse(id).unwrap();
            let back = b.decrypt(&key_id, ct).unwrap_or_else(|e| panic!("trial {trial}: {id} no longer decrypts: {e}"));
            assert_eq!(back.as_slice(), plain.as_slice(), "trial {trial}: {id}");
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Rotate,
    Stage,
    Activate(u32),
    Retire(u32),
    Import(usize),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_never_corrupts_loses_or_half_applies() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    // L: the keystore the local operations run on, with a live server.
    let l = KeySource::software(dir.path());
    let KeySource::Software { keystore: l_dir, master_key: l_key } = l.clone() else { unreachable!() };
    let mut plugin = Plugin::start(&l, &dir.path().join("kms.sock"), &dir.path().join("plugin.log"), &[]).await;

    // E exports to I (created by its first import); bundles prepared up front.
    let e_dir = dir.path().join("e");
    std::fs::create_dir_all(&e_dir).unwrap();
    let e = KeySource::software(&e_dir);
    let i_root = dir.path().join("i");
    std::fs::create_dir_all(&i_root).unwrap();
    let i_dir = i_root.join("keystore");
    let i_key = i_root.join("master.key");
    let i = KeySource::Software { keystore: i_dir.clone(), master_key: i_key.clone() };
    let me = Receiver::new(&i_root, KemAlgorithm::XWing);
    let signer = e.identity_fingerprint();
    let import_trials = TRIALS / 5;
    let bundles: Vec<PathBuf> = (0..=import_trials)
        .map(|n| {
            if n % 2 == 1 {
                e.cli(&["rotate", "--stage"]);
            }
            let out = i_root.join(format!("b{n}.bundle"));
            e.export_to(&me, &out);
            out
        })
        .collect();
    let import_args = |n: usize| i.import_args(&me, &signer, &bundles[n]);
    // The first import creates I.
    assert!(timed(&import_args(0)) > Duration::ZERO);

    // How long each operation takes here, to spread the kills over its run.
    let op_args = |op: Op| -> (Vec<String>, &'static str) {
        let (mut a, name): (Vec<String>, _) = match op {
            Op::Rotate => (vec!["rotate".into()], "rotate"),
            Op::Stage => (vec!["rotate".into(), "--stage".into()], "stage"),
            Op::Activate(v) => (vec!["activate".into(), "--version".into(), v.to_string()], "activate"),
            Op::Retire(v) => (vec!["retire".into(), "--version".into(), v.to_string()], "retire"),
            Op::Import(n) => return (import_args(n), "import"),
        };
        a.extend(key_args(&l_dir, &l_key));
        (a, name)
    };
    // Per operation, an estimate of one run (updated from runs that finished),
    // to spread the kills over the whole run.
    let mut est: BTreeMap<&str, Duration> = BTreeMap::new();
    est.insert("stage", timed(&op_args(Op::Stage).0));
    est.insert("activate", timed(&op_args(Op::Activate(2)).0));
    est.insert("rotate", timed(&op_args(Op::Rotate).0));
    est.insert("retire", timed(&op_args(Op::Retire(2)).0));
    est.insert("import", timed(&op_args(Op::Import(1)).0));

    let mut sealed_l = Sealed(BTreeMap::new());
    let mut sealed_i = Sealed(BTreeMap::new());
    sealed_l.add_active(&l_dir, &l_key, 0);
    sealed_i.add_active(&i_dir, &i_key, 0);
    let mut next_bundle = 2;
    let (mut killed, mut completed) = (BTreeMap::<&str, usize>::new(), BTreeMap::<&str, usize>::new());
    for trial in 0..TRIALS {
        let importing = trial % 5 == 4 && next_bundle < bundles.len();
        let (ks, key) = if importing { (&i_dir, &i_key) } else { (&l_dir, &l_key) };
        let before = snapshot(ks, key);
        let op = match trial % 5 {
            4 if importing => {
                next_bundle += 1;
                Op::Import(next_bundle - 1)
            }
            0 => Op::Rotate,
            1 | 4 => Op::Stage,
            2 => Op::Activate(*before.ids.keys().next_back().unwrap()),
            _ => match before.ids.keys().find(|v| **v != before.active) {
                Some(v) if before.ids.len() > 3 => Op::Retire(*v),
                _ => Op::Stage,
            },
        };
        let (args, name) = op_args(op);
        let r = qubesec_core::rand::bytes(2).unwrap();
        let delay = est[name].mul_f64(1.2 * f64::from(u16::from_be_bytes([r[0], r[1]])) / 65535.0);
        let outcome = run_and_kill(&args, delay);
        let was_killed = outcome.is_none();
        if let Some(took) = outcome {
            let e = est.get_mut(name).unwrap();
            *e = e.mul_f64(0.7) + took.mul_f64(0.3);
        }
        *if was_killed { killed.entry(name) } else { completed.entry(name) }.or_default() += 1;

        let after = snapshot(ks, key);
        let lost: Vec<_> = before.ids.iter().filter(|(v, id)| after.ids.get(v) != Some(id)).collect();
        let added: Vec<u32> = after.ids.keys().filter(|v| !before.ids.contains_key(v)).copied().collect();
        let unchanged = before == after;
        let ok = match op {
            Op::Rotate => unchanged || (lost.is_empty() && added.len() == 1 && after.active == added[0]),
            Op::Stage => unchanged || (lost.is_empty() && added.len() == 1 && after.active == before.active),
            Op::Activate(v) => {
                lost.is_empty() && added.is_empty() && (after.active == before.active || after.active == v)
            }
            Op::Retire(v) => {
                added.is_empty() && after.active == before.active && (unchanged || (lost.len() == 1 && *lost[0].0 == v))
            }
            Op::Import(_) => lost.is_empty() && after.active == before.active,
        };
        assert!(
            ok,
            "trial {trial} ({op:?}, killed: {was_killed}): half-applied or lost:\nbefore {before:?}\nafter {after:?}"
        );
        let sealed = if importing { &mut sealed_i } else { &mut sealed_l };
        sealed.check(ks, key, &after, trial);
        sealed.add_active(ks, key, trial + 1);
        if let Ok(Some(code)) = plugin.child.try_wait() {
            panic!("the server exited ({code}) during trial {trial}:\n{}", plugin.log_text());
        }
    }
    // The server read every state the trials left, and never a broken one.
    plugin.wait_healthy(Duration::from_secs(10)).await;
    let log = plugin.log_text();
    assert!(!log.contains("refresh failed"), "the server saw a damaged keystore:\n{log}");
    assert!(plugin.stop());
    let leftovers: Vec<_> = std::fs::read_dir(&l_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .map(|e| e.file_name())
        .collect();
    let total_killed: usize = killed.values().sum();
    eprintln!(
        "{TRIALS} SIGKILL trials in {:.1} s (run-time estimates {est:?}): killed mid-run {killed:?}, completed {completed:?}; \
         temp files left until the next write: {}",
        started.elapsed().as_secs_f64(),
        leftovers.len()
    );
    assert!(total_killed >= TRIALS / 4, "too few kills landed mid-run ({total_killed}) to mean anything");
    for name in ["rotate", "stage", "activate", "retire", "import"] {
        assert!(killed.get(name).copied().unwrap_or(0) >= 3, "{name}: too few mid-run kills: {killed:?}");
    }
}

#[test]
fn concurrent_rotations_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let ks_dir = dir.path().join("ks");
    let key = dir.path().join("master.key");
    let args = ["--keystore", ks_dir.to_str().unwrap(), "--master-key-file", key.to_str().unwrap()];
    common::run_ok(&[&["keystore", "init"][..], &args[..]].concat(), &[]);
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut c = Command::new(common::BIN);
            c.arg("rotate");
            if i % 2 == 0 {
                c.arg("--stage");
            }
            c.args(args).stdout(Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let snap = snapshot(&ks_dir, &key);
    let ids: BTreeSet<_> = snap.ids.values().collect();
    assert_eq!(ids.len(), 9, "1 initial + 8 rotations, none lost: {ids:?}");
    assert_eq!(snap.ids.keys().copied().collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
}
