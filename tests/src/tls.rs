//! A private CA and a server certificate for 127.0.0.1/localhost, generated per test with
//! rcgen, written as PEM files the server and agent read.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Generates the CA and a leaf for `localhost` and `127.0.0.1` into `dir`.
pub fn generate(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).expect("tls dir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.distinguished_name.push(DnType::CommonName, "tingzhen e2e test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("leaf");
    leaf.distinguished_name.push(DnType::CommonName, "tingzhen collector");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");

    let files = TlsFiles {
        ca_pem: ca_cert.pem(),
        ca_path: dir.join("ca.pem"),
        cert_path: dir.join("server.pem"),
        key_path: dir.join("server.key"),
    };
    std::fs::write(&files.ca_path, &files.ca_pem).expect("write ca");
    std::fs::write(&files.cert_path, leaf_cert.pem()).expect("write cert");
    std::fs::write(&files.key_path, leaf_key.serialize_pem()).expect("write key");
    files
}
