//! The `strait` binary builds as a static executable that runs in an empty root.
//!
//! Builds `--release --target x86_64-unknown-linux-musl` into `target/static`
//! (a separate target dir: the outer `cargo test` holds the lock on `target/`).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-musl";

fn build_static() -> PathBuf {
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
    let mut cmd = Command::new("chroot");
    cmd.arg(&root).args(["/strait", "--version"]);
    let out = cmd.output().expect("run chroot");
    let out = if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted") {
        // Not root: a user namespace grants chroot.
        Command::new("unshare")
            .args(["--map-root-user", "chroot"])
            .arg(&root)
            .args(["/strait", "--version"])
            .output()
            .unwrap()
    } else {
        out
    };
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
