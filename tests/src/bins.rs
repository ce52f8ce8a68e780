//! The binaries under test: built once per test process with cargo, found in the target dir
//! the running test executable lives in (so debug tests test debug builds, release benches
//! release builds).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static BIN_DIR: OnceLock<PathBuf> = OnceLock::new();

/// `target/<profile>/` of the running executable, where cargo puts the workspace binaries.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a parent").to_path_buf();
    // Test executables live in target/<profile>/deps; bins in target/<profile>.
    if dir.file_name().is_some_and(|n| n == "deps" || n == "examples") {
        dir = dir.parent().expect("deps has a parent").to_path_buf();
    }
    dir
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace root").to_path_buf()
}

/// Builds the workspace's binaries with cargo (`$CARGO`, else `cargo`) into the target dir of
/// the running executable and returns the directory holding them.
/// `TINGZHEN_BIN_DIR` points at prebuilt binaries instead (no build then).
///
/// The build asks for what `cargo test --workspace` built already: every member (so features
/// unify over the same packages) and `--examples` (so cargo resolves features with
/// dev-dependencies, as it does for tests). The test run has then compiled every unit this
/// build needs and it only checks fingerprints (under a second). `-p tingzhen -p tingzhen-agent
/// --bins` resolved features differently and recompiled core and most crates above it beside
/// the test build's copies: 2 min 44 s and a second set of artifacts on a 2-core machine.
fn build() -> PathBuf {
    if let Some(dir) = std::env::var_os("TINGZHEN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let dir = profile_dir();
    let profile = dir.file_name().and_then(|s| s.to_str()).unwrap_or("debug").to_string();
    let target_dir = dir.parent().expect("profile dir has a parent");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_this_test) {
            cmd.env_remove(&name);
        }
    }
    cmd.current_dir(workspace_root())
        .args(["build", "--workspace", "--bins", "--examples", "--target-dir"])
        .arg(target_dir);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "building the binaries under test (tingzhen, tingzhen-agent) failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Variables cargo sets for the running test (its package's name, manifest dir, …), which the
/// outer `cargo test` did not have. Build scripts that declare `rerun-if-env-changed` on them
/// (ring does, for `CARGO_PKG_NAME` and the manifest dir) would see them change, rebuild, and
/// take every crate above them along, here and again in the next outer build.
fn set_by_cargo_for_this_test(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_BIN_EXE_")
        || matches!(
            name,
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
}

/// The directory with both binaries, built once per test process.
pub fn bin_dir() -> &'static Path {
    BIN_DIR.get_or_init(build)
}

fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.is_file(), "binary {} not found after the build", p.display());
    p
}

/// The server binary.
pub fn tingzhen() -> PathBuf {
    bin("tingzhen")
}

/// The agent binary.
pub fn agent() -> PathBuf {
    bin("tingzhen-agent")
}

/// A peer binary installed from Debian packages; missing means the machine is not set up
/// (run scripts/test.sh), which fails the test rather than skipping it.
pub fn peer(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    assert!(p.is_file(), "{path} is missing: install Debian package `{package}` (scripts/test.sh does this)");
    p
}
