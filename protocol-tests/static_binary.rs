//! The `strait` binary builds as a static executable that runs in an empty root,
//! and replicates over TLS from a root that holds only what the `FROM scratch`
//! image (`.docker/Dockerfile`) holds: the binary and a CA bundle (plus its config).
//! The Dockerfile's build stage builds from exactly the files it copies.
//!
//! Builds `--release --target x86_64-unknown-linux-musl` into `target/static`
//! (a separate target dir: the outer `cargo test` holds the lock on `target/`).

mod harness;
#[path = "harness/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-unknown-linux-musl";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn static_target_dir() -> PathBuf {
    root().join("target/static")
}

/// Held by every cargo build into `target/static` in this process: they share
/// its lock and its `release/strait`.
static STATIC_BUILD: Mutex<()> = Mutex::new(());

/// `cargo`, without the variables `cargo test` sets for this process: ring's
/// build script reruns when `CARGO_MANIFEST_DIR`, `CARGO_PKG_*` and the like
/// change, so builds from here and from a shell would rebuild each other.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_CFG_")
            || matches!(
                &*name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            cmd.env_remove(&*name);
        }
    }
    cmd
}

/// Builds the static binary once per test process, and returns a copy of it
/// (the Dockerfile's build, below, links its own binary to the same path).
fn build_static() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_static_now).clone()
}

fn build_static_now() -> PathBuf {
    let _lock = STATIC_BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let target_dir = static_target_dir();
    let out = cargo()
        .current_dir(root())
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
    // Copied, then renamed into place: another test process may be reading it.
    let copy = target_dir.join("strait-under-test");
    let tmp = target_dir.join(format!("strait-under-test.{}", std::process::id()));
    std::fs::copy(target_dir.join(TARGET).join("release/strait"), &tmp).unwrap();
    std::fs::rename(&tmp, &copy).unwrap();
    copy
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

// ------------------------------------------------------- the Dockerfile ----

/// One stage of `.docker/Dockerfile`: its `FROM` arguments and its other
/// instructions as (KEYWORD, arguments), continuation lines joined, comments
/// dropped.
struct Stage {
    from: Vec<String>,
    instructions: Vec<(String, String)>,
}

fn dockerfile() -> Vec<Stage> {
    let text = std::fs::read_to_string(root().join(".docker/Dockerfile")).unwrap();
    let mut lines = Vec::new();
    let mut line = String::new();
    for l in text.lines().map(str::trim) {
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(part) => line = line + part + " ",
            None => lines.push(std::mem::take(&mut line) + l),
        }
    }
    assert!(line.is_empty(), "the Dockerfile ends in a continuation line");
    let mut stages: Vec<Stage> = Vec::new();
    for line in lines {
        let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let (keyword, args) = (keyword.to_ascii_uppercase(), args.trim().to_string());
        if keyword == "FROM" {
            let from = args.split_whitespace().map(String::from).collect();
            stages.push(Stage {
                from,
                instructions: vec![],
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((keyword, args));
        } else {
            assert_eq!(keyword, "ARG", "{keyword} before the first FROM");
        }
    }
    stages
}

/// `COPY [--flag...] SOURCE... DEST` (shell form).
struct Copy {
    flags: Vec<String>,
    sources: Vec<String>,
    dest: String,
}

fn parse_copy(args: &str) -> Copy {
    assert!(!args.starts_with('['), "COPY {args}: the JSON form is not handled here");
    let (flags, mut words): (Vec<String>, Vec<String>) = args
        .split_whitespace()
        .map(String::from)
        .partition(|w| w.starts_with("--"));
    let dest = words.pop().unwrap_or_default();
    assert!(!words.is_empty(), "COPY {args}: no source");
    Copy {
        flags,
        sources: words,
        dest,
    }
}

/// `path` as an absolute, normalized path in the container (`WORKDIR` `dir`).
fn container_path(dir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{dir}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// What the build stage does: the `COPY`s from the build context (with the
/// `WORKDIR` each ran in), and its `RUN cargo build ... && strip BINARY`.
struct BuildStage {
    name: String,
    copies: Vec<(Copy, String)>,
    /// `WORKDIR` of the cargo build.
    workdir: String,
    /// The arguments after `cargo`.
    cargo_args: Vec<String>,
    /// The file `strip` is run on (absolute).
    stripped: String,
}

fn build_stage(stage: &Stage) -> BuildStage {
    let name = match stage.from.as_slice() {
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => name.clone(),
        _ => panic!("the build stage (FROM {}) has no name", stage.from.join(" ")),
    };
    let mut workdir = "/".to_string();
    let mut copies = Vec::new();
    let mut build = None;
    for (keyword, args) in &stage.instructions {
        match keyword.as_str() {
            "WORKDIR" => workdir = container_path(&workdir, args),
            "ADD" => panic!("ADD {args}: use COPY (this test follows COPY only)"),
            "COPY" => {
                let copy = parse_copy(args);
                assert!(copy.flags.is_empty(), "COPY {args}: flags are not handled here");
                copies.push((copy, workdir.clone()));
            }
            "RUN" if args.contains("cargo build") => {
                assert!(build.is_none(), "more than one cargo build in the build stage");
                let (mut cargo_args, mut stripped) = (None, None);
                for command in args.split("&&") {
                    let words: Vec<String> = command.split_whitespace().map(String::from).collect();
                    assert!(
                        words
                            .iter()
                            .all(|w| !w.contains(['$', '\'', '"', '`', ';', '|', '>', '<'])),
                        "RUN {args}: shell syntax beyond `&&` is not handled here"
                    );
                    match words.first().map(String::as_str) {
                        Some("cargo") => cargo_args = Some(words[1..].to_vec()),
                        Some("strip") => stripped = Some(container_path(&workdir, words.last().unwrap())),
                        _ => {}
                    }
                }
                let cargo_args = cargo_args.expect("`cargo build` is not a command of its own");
                assert_eq!(cargo_args[0], "build", "RUN {args}");
                let stripped = stripped.expect("the build stage does not strip the binary");
                build = Some((workdir.clone(), cargo_args, stripped));
            }
            _ => {}
        }
    }
    let (workdir, cargo_args, stripped) = build.expect("no `RUN cargo build` in the build stage");
    BuildStage {
        name,
        copies,
        workdir,
        cargo_args,
        stripped,
    }
}

/// The image, read from the Dockerfile: its last stage is `FROM scratch` and
/// copies exactly two files from the build stage: Debian's CA bundle to where
/// rustls looks for it, and the binary the build stage's cargo built and
/// stripped, to `/strait`. Returns the build stage and the binary's path
/// relative to cargo's target dir.
fn image() -> (BuildStage, PathBuf) {
    const CA: &str = "/etc/ssl/certs/ca-certificates.crt";
    let stages = dockerfile();
    let (last, earlier) = stages.split_last().expect("no FROM in the Dockerfile");
    assert_eq!(last.from, ["scratch"], "the image's last stage is not FROM scratch");
    let copies: Vec<Copy> = last
        .instructions
        .iter()
        .filter(|(keyword, _)| matches!(keyword.as_str(), "COPY" | "ADD"))
        .map(|(_, args)| parse_copy(args))
        .collect();
    let mut dests: Vec<&str> = copies.iter().map(|c| c.dest.as_str()).collect();
    dests.sort();
    assert_eq!(
        dests,
        [CA, "/strait"],
        "the image holds other files than this test runs with"
    );
    let from = copies[0].flags.join(" ");
    let from = from
        .strip_prefix("--from=")
        .unwrap_or_else(|| panic!("the image copies from `{from}`"));
    let build = earlier
        .iter()
        .map(build_stage)
        .find(|b| b.name == from)
        .unwrap_or_else(|| panic!("no build stage named {from}"));
    let source = |dest: &str| {
        let copy = copies.iter().find(|c| c.dest == dest).unwrap();
        assert_eq!(
            copy.flags,
            [format!("--from={from}")],
            "{dest} is not copied from the build stage"
        );
        assert_eq!(copy.sources.len(), 1, "{dest} is copied from more than one file");
        container_path("/", &copy.sources[0])
    };
    assert_eq!(
        source(CA),
        CA,
        "the CA bundle is not the build stage's (Debian's) bundle"
    );
    let binary = source("/strait");
    assert_eq!(
        binary, build.stripped,
        "the image's binary is not the one the build stage stripped"
    );
    let under_target = binary
        .strip_prefix(&format!("{}/target/", build.workdir))
        .unwrap_or_else(|| panic!("{binary} is not in cargo's target dir of the build stage"));
    let under_target = PathBuf::from(under_target);
    (build, under_target)
}

/// `.dockerignore`: (exclude, pattern components) in order. The last rule
/// matching a path, or a directory above it, decides (`!` re-includes).
struct DockerIgnore(Vec<(bool, Vec<String>)>);

impl DockerIgnore {
    fn load() -> Self {
        let text = std::fs::read_to_string(root().join(".dockerignore")).unwrap_or_default();
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (exclude, pattern) = match l.strip_prefix('!') {
                    Some(p) => (false, p.trim()),
                    None => (true, l),
                };
                assert!(!pattern.contains(['[', '\\']), ".dockerignore `{l}`: not handled here");
                let parts = pattern.split('/').filter(|p| !p.is_empty() && *p != ".");
                (exclude, parts.map(String::from).collect())
            })
            .collect();
        DockerIgnore(rules)
    }

    /// `path`: relative to the build context, `/`-separated.
    fn ignores(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').collect();
        let mut ignored = false;
        for (exclude, pattern) in &self.0 {
            if (1..=parts.len()).any(|n| glob(pattern, &parts[..n])) {
                ignored = *exclude;
            }
        }
        ignored
    }
}

/// Path components against pattern components: `**` matches any number of
/// components, `*` and `?` match within one.
fn glob(pattern: &[String], parts: &[&str]) -> bool {
    fn wild(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => wild(&p[1..], s) || (!s.is_empty() && wild(p, &s[1..])),
            (Some(b'?'), Some(_)) => wild(&p[1..], &s[1..]),
            (Some(a), Some(b)) => a == b && wild(&p[1..], &s[1..]),
            _ => false,
        }
    }
    match (pattern.first(), parts.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => glob(&pattern[1..], parts) || (!parts.is_empty() && glob(pattern, &parts[1..])),
        (Some(p), Some(s)) => wild(p.as_bytes(), s.as_bytes()) && glob(&pattern[1..], &parts[1..]),
        _ => false,
    }
}

/// Copies `rel` (a file or directory of the build context, minus what
/// `.dockerignore` excludes) to `dest`, as `COPY` does: a directory's
/// contents go into `dest`. Returns the files copied. Files keep their
/// modification times, so cargo rebuilds nothing that `build_static` built
/// from the same sources (unit hashes and fingerprints of path packages are
/// relative to the workspace root); a file missing here still fails the build.
fn copy_from_context(ignore: &DockerIgnore, rel: &str, dest: &Path) -> usize {
    let src = root().join(rel);
    let meta = std::fs::symlink_metadata(&src).unwrap();
    if meta.is_dir() {
        std::fs::create_dir_all(dest).unwrap();
        let mut n = 0;
        for entry in std::fs::read_dir(&src).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if !ignore.ignores(&child) {
                n += copy_from_context(ignore, &child, &dest.join(&name));
            }
        }
        n
    } else {
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if meta.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), dest).unwrap();
        } else {
            std::fs::copy(&src, dest).unwrap();
            let file = std::fs::File::options().write(true).open(dest).unwrap();
            file.set_modified(meta.modified().unwrap()).unwrap();
        }
        1
    }
}

/// Assembles in `dir` what the build stage's `COPY` lines put in its cargo
/// `WORKDIR`, from this checkout as the build context. Returns the file count.
fn assemble_build_context(build: &BuildStage, dir: &Path) -> usize {
    let ignore = DockerIgnore::load();
    let mut files = 0;
    for (copy, workdir) in &build.copies {
        let dest = container_path(workdir, &copy.dest);
        let rel = if dest == build.workdir {
            ""
        } else {
            dest.strip_prefix(&format!("{}/", build.workdir))
                .unwrap_or_else(|| panic!("COPY to {dest}, outside the build's WORKDIR {}", build.workdir))
        };
        let into_dir = copy.dest.ends_with('/') || copy.sources.len() > 1;
        for source in &copy.sources {
            assert!(
                !source.contains(['*', '?', '[']),
                "COPY {source}: wildcards are not handled here"
            );
            let source = container_path("/", source);
            let source = source.trim_start_matches('/');
            assert!(
                root().join(source).exists() && (source.is_empty() || !ignore.ignores(source)),
                "COPY {source}: not in the build context (missing, or excluded by .dockerignore)"
            );
            let is_dir = root().join(source).is_dir();
            let mut to = dir.join(rel);
            if into_dir && !is_dir {
                to = to.join(Path::new(source).file_name().unwrap());
            }
            files += copy_from_context(&ignore, source, &to);
        }
    }
    files
}

/// Removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Dockerfile's build stage builds: exactly the files its `COPY` lines
/// take from the build context (minus `.dockerignore`), assembled in a
/// temporary directory, build with the stage's own cargo command (plus
/// `--offline`, into `target/static`) into the binary the image copies.
#[test]
fn dockerfile_build_stage_builds_from_what_it_copies() {
    let (build, binary) = image();
    let dir = TempDir(std::env::temp_dir().join(format!("strait-docker-context-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let files = assemble_build_context(&build, &dir.0);
    let _lock = STATIC_BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let out = cargo()
        .current_dir(&dir.0)
        .args(&build.cargo_args)
        .args(["--offline", "--target-dir"])
        .arg(static_target_dir())
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let compiled: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Compiling "))
        .collect();
    eprintln!(
        "cargo {} --offline in a copy of the build stage's {files} files: {:.1?}, compiled {compiled:?}",
        build.cargo_args.join(" "),
        started.elapsed()
    );
    assert!(
        out.status.success(),
        "the Dockerfile's build stage fails: `cargo {} --offline` in a directory holding \
         only what its COPY lines copy:\n{}",
        build.cargo_args.join(" "),
        stderr
    );
    let bin = static_target_dir().join(&binary);
    let (interp, needed) = elf_dynamic_facts(&std::fs::read(&bin).unwrap());
    assert!(!interp && needed == 0, "{} is not static", bin.display());
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("strait {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The static binary, in a root holding only the binary, the CA bundle where the
/// image puts it, and a config, replicates between two local clusters over TLS
/// (the destination's SSL listener, verified through that bundle).
#[test]
fn static_binary_replicates_over_tls_from_a_scratch_like_root() {
    image(); // the layout below is the image's
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
    // Heartbeats off: the summary counts exactly the 3,000 records (with them
    // on, the heartbeat topic's records are copied too once it is fetched
    // before the SIGTERM, as a fresh-clone CI run saw: 3003).
    std::fs::write(
        root.join("strait.toml"),
        format!(
            "name = \"{topic}\"\ntopics = [\"{topic}\"]\ncheckpoint_interval_ms = 200\nheartbeats = false\n\
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
