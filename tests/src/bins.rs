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

/// Builds both binaries with cargo (`$CARGO`, else `cargo`) into the target dir of the running
/// executable and returns the directory holding them. One invocation for both packages, so
/// cargo unifies features once (building them separately compiles shared crates twice).
/// `TINGZHEN_BIN_DIR` points at prebuilt binaries instead (no build then).
fn build() -> PathBuf {
    if let Some(dir) = std::env::var_os("TINGZHEN_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let dir = profile_dir();
    let profile = dir.file_name().and_then(|s| s.to_str()).unwrap_or("debug").to_string();
    let target_dir = dir.parent().expect("profile dir has a parent");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "-p", "tingzhen", "-p", "tingzhen-agent", "--bins", "--target-dir"])
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
