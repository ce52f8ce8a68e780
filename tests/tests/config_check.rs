//! `tingzhen config check`: every example config under `deploy/` passes; a file with an unknown
//! key (or a bad value) fails with a message naming the key.

use std::path::{Path, PathBuf};
use std::process::Command;
use tingzhen_tests::bins;

fn example_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let p = e.path();
        if p.is_dir() {
            example_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml")
            // Server configs; agent examples (`agent*.toml`) are parsed by the agent's own tests.
            && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("tingzhen"))
        {
            out.push(p);
        }
    }
}

fn check(file: &Path) -> (bool, String) {
    let out = Command::new(bins::tingzhen()).args(["config", "check"]).arg(file).output().expect("run config check");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn every_server_example_under_deploy_passes() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("deploy");
    let mut files = Vec::new();
    example_files(&deploy, &mut files);
    assert!(!files.is_empty(), "no example config (*.toml) under {}", deploy.display());
    let failed: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let (ok, text) = check(f);
            (!ok).then(|| format!("{}: {text}", f.display()))
        })
        .collect();
    assert!(failed.is_empty(), "`tingzhen config check` rejects shipped examples:\n{}", failed.join("\n"));
}

#[test]
fn unknown_keys_and_bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[server]\nlisten = \"127.0.0.1:8630\"\nlisten_adress = \"0.0.0.0:1\"\n", "listen_adress"),
        ("[storage]\nretension = \"15d\"\n", "retension"),
        ("[server.tls]\ncert_file = \"a.pem\"\nkey_file = \"a.key\"\nclient_ca_file = \"ca.pem\"\n", "client_ca_file"),
        ("[qurey]\ntimeout = \"1m\"\n", "qurey"),
        ("debug_mode = true\n", "debug_mode"),
        ("[query]\nmax_concurent = 3\n", "max_concurent"),
        ("[storage]\nretention = \"forever\"\n", "retention"),
        ("[server]\nmax_body_bytes = \"lots\"\n", "max_body_bytes"),
    ];
    let mut failures = Vec::new();
    for (i, (toml, key)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&p, toml).unwrap();
        let (ok, text) = check(&p);
        if ok || !text.contains(key) {
            failures.push(format!("{toml:?}: exit ok={ok}, message does not name {key:?}: {text}"));
        }
    }
    // And the empty file is a valid config (every key has a default).
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let (ok, text) = check(&empty);
    if !ok {
        failures.push(format!("empty config rejected: {text}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
