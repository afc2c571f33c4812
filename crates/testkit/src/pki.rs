//! Certificates for TLS tests: a throwaway certificate authority that issues server and client
//! certificates into a directory, as PEM files the gateway and the worker read.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// A certificate and its key, written to files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (leaf, then the CA), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// A test certificate authority whose certificate is `ca` in its directory.
pub struct Authority {
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate, PEM: what clients and servers trust.
    pub ca: PathBuf,
}

impl Authority {
    /// A new authority named `name`, writing its files under `dir`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        let ca = dir.join(format!("{name}.pem"));
        std::fs::write(&ca, issuer.pem()).expect("write the CA certificate");
        Self { dir: dir.to_owned(), issuer, ca }
    }

    /// A server certificate for `hosts` (names or IP addresses), as `file.pem` and
    /// `file-key.pem`; `common_name` tells certificates apart in tests.
    pub fn server(&self, file: &str, common_name: &str, hosts: &[&str]) -> Issued {
        self.issue(file, common_name, hosts, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate, as `file.pem` and `file-key.pem`.
    pub fn client(&self, file: &str, common_name: &str) -> Issued {
        self.issue(file, common_name, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, file: &str, common_name: &str, hosts: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let hosts: Vec<String> = hosts.iter().map(|host| (*host).to_owned()).collect();
        let mut params = CertificateParams::new(hosts).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let certificate = params.signed_by(&key, &self.issuer).expect("sign the certificate");
        let issued =
            Issued { cert: self.dir.join(format!("{file}.pem")), key: self.dir.join(format!("{file}-key.pem")) };
        std::fs::write(&issued.cert, certificate.pem() + &self.issuer.pem()).expect("write the certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write the key");
        issued
    }
}
