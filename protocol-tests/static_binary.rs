//! The `strait` binary builds as a static executable that runs in an empty root,
//! and replicates over TLS from a root that holds only what the `FROM scratch`
//! image (`.docker/Dockerfile`) holds: the binary and a CA bundle (plus its config).
//!
//! Builds `--release --target x86_64-unknown-linux-musl` into `target/static`
//! (a separate target dir: the outer `cargo test` holds the lock on `target/`).

mod harness;
#[path = "harness/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the static binary once per test process.
fn build_static() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_static_now).clone()
}

fn build_static_now() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = root.join("target/static");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            "strait",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "static build failed (needs `rustup target add {TARGET}` and musl-tools):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target_dir.join(TARGET).join("release/strait")
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// (has a PT_INTERP program header, DT_NEEDED entries)
fn elf_dynamic_facts(elf: &[u8]) -> (bool, usize) {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "64-bit ELF expected");
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36) as usize;
    let phnum = u16_at(elf, 0x38) as usize;
    let mut interp = false;
    let mut needed = 0;
    for i in 0..phnum {
        let ph = &elf[phoff + i * phentsize..];
        match u32_at(ph, 0) {
            3 => interp = true, // PT_INTERP
            2 => {
                // PT_DYNAMIC: count DT_NEEDED (tag 1) entries
                let (off, size) = (u64_at(ph, 8) as usize, u64_at(ph, 32) as usize);
                for e in elf[off..off + size].chunks_exact(16) {
                    match u64_at(e, 0) {
                        0 => break,
                        1 => needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (interp, needed)
}

#[test]
fn strait_is_static_and_runs_in_an_empty_root() {
    let bin = build_static();
    let elf = std::fs::read(&bin).unwrap();
    let (interp, needed) = elf_dynamic_facts(&elf);
    assert!(!interp, "{} asks for a dynamic loader", bin.display());
    assert_eq!(needed, 0, "{} needs shared libraries", bin.display());
    eprintln!("static binary: {} bytes", elf.len());

    // A root directory holding nothing but the binary.
    let root = std::env::temp_dir().join(format!("strait-chroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&bin, root.join("strait")).unwrap();
    let entries: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
    assert_eq!(entries.len(), 1);
    let out = chroot(&root, &["/strait", "--version"]).output().expect("run chroot");
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        out.status.success(),
        "chroot run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("strait {}", env!("CARGO_PKG_VERSION"))
    );
}

/// `chroot ROOT ARGS...`, through a user namespace when not root.
fn chroot(root: &Path, args: &[&str]) -> Command {
    let is_root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let mut cmd = if is_root {
        Command::new("chroot")
    } else {
        let mut c = Command::new("unshare");
        c.args(["--map-root-user", "chroot"]);
        c
    };
    cmd.arg(root).args(args);
    cmd
}

fn tool(args: &[&str]) -> String {
    harness::kafka_tool(args)
}

/// Records in `topic` by the independent client (0 while the topic does not exist yet).
fn count(bootstrap: &str, topic: &str) -> u64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol-tests/tools/kafka_tool.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["count", "--bootstrap", bootstrap, "--topic", topic, "--timeout", "10"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["total"].as_u64())
        .unwrap_or(0)
}

/// The files the scratch image holds, read from `.docker/Dockerfile`: the
/// destination of every COPY of its last stage.
fn image_files() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.docker/Dockerfile")).unwrap();
    let last = text.rsplit("\nFROM ").next().unwrap();
    assert!(
        last.starts_with("scratch"),
        "the image's last stage is not FROM scratch"
    );
    last.lines()
        .filter(|l| l.starts_with("COPY "))
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect()
}

/// The static binary, in a root holding only the binary, the CA bundle where the
/// image puts it, and a config, replicates between two local clusters over TLS
/// (the destination's SSL listener, verified through that bundle).
#[test]
fn static_binary_replicates_over_tls_from_a_scratch_like_root() {
    let mut files = image_files();
    files.sort();
    assert_eq!(
        files,
        ["/etc/ssl/certs/ca-certificates.crt", "/strait"],
        "Dockerfile and this test disagree"
    );
    let bin = build_static();
    let pki = pki::make_pki("static");
    let src = harness::kafka4();
    let dst = harness::KafkaCluster::start_with(
        harness::KAFKA_4,
        1,
        &harness::StartOptions {
            listeners: vec!["SSL:SSL".into()],
            props: format!(
                "listener.name.ssl.ssl.keystore.type=PEM\nlistener.name.ssl.ssl.keystore.location={}\n",
                pki.p("server.pem")
            ),
            scram: vec![],
        },
    )
    .unwrap();
    let topic = harness::unique_topic("scratch");
    tool(&[
        "create",
        "--bootstrap",
        &src.bootstrap,
        "--topic",
        &topic,
        "--partitions",
        "3",
        "--config",
        "retention.ms=-1",
    ]);
    tool(&[
        "load",
        "--bootstrap",
        &src.bootstrap,
        "--topic",
        &topic,
        "--count",
        "3000",
        "--codec",
        "zstd",
    ]);

    let root = std::env::temp_dir().join(format!("strait-scratch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("etc/ssl/certs")).unwrap();
    std::fs::copy(&bin, root.join("strait")).unwrap();
    std::fs::copy(pki.path("ca.pem"), root.join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    // No ca_file: the bundle at the image's path is the system CA store.
    std::fs::write(
        root.join("strait.toml"),
        format!(
            "name = \"{topic}\"\ntopics = [\"{topic}\"]\ncheckpoint_interval_ms = 200\n\
             [source]\nbootstrap_servers = \"{}\"\n\
             [destination]\nbootstrap_servers = \"{}\"\n[destination.tls]\n",
            src.bootstrap,
            dst.listener_bootstrap("SSL")
        ),
    )
    .unwrap();
    let mut child = chroot(
        &root,
        &["/strait", "run", "--config", "/strait.toml", "--progress", "1"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = count(&dst.bootstrap, &topic);
        if n >= 3000 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "strait exited early with {status}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of 3000 records on the destination after 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // SIGTERM: drain and final checkpoint, exit 0.
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&root);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strait run failed in the chroot:\n{log}");
    assert!(log.contains("stopped: 3000 records"), "{log}");
    let v = tool(&[
        "compare",
        "--source",
        &src.bootstrap,
        "--source-topic",
        &topic,
        "--dest",
        &dst.bootstrap,
        "--dest-topic",
        &topic,
    ]);
    let v: serde_json::Value = serde_json::from_str(v.trim().lines().last().unwrap()).unwrap();
    eprintln!("compare: {v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    assert_eq!(v["source_records"], 3000, "{v}");
}
