//! The PKI against itself and against `openssl verify`.

use std::{
    process::Command,
    time::{Duration, SystemTime},
};

use sluice_pki::{
    Authority, PkiError, cert_info, cluster_spiffe_id, new_key_and_csr, renewal_due, verify_chain,
};

const HOUR: u64 = 3600;

fn openssl_verify(root_pem: &str, chain_pem: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let certs: Vec<&str> = chain_pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    std::fs::write(dir.path().join("root.pem"), root_pem).unwrap();
    std::fs::write(dir.path().join("leaf.pem"), certs[0]).unwrap();
    std::fs::write(dir.path().join("untrusted.pem"), certs[1..].concat()).unwrap();
    let out = Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "untrusted.pem",
            "-purpose",
            "sslclient",
            "leaf.pem",
        ])
        .output()
        .expect("openssl (Debian's openssl package) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_signed_csr_chains_to_the_root_and_names_the_cluster() {
    let now = SystemTime::now();
    let ca = Authority::generate(now).unwrap();
    let (_key, csr) = new_key_and_csr("cluster-1").unwrap();
    let issued = ca.sign_cluster_csr(&csr, "cluster-1", now, HOUR).unwrap();

    verify_chain(ca.root_pem(), &issued.chain_pem, now).unwrap();
    let (ok, text) = openssl_verify(ca.root_pem(), &issued.chain_pem);
    assert!(ok, "openssl verify refused the issued chain: {text}");

    let info = cert_info(&issued.chain_pem).unwrap();
    assert_eq!(info.cluster.as_deref(), Some("cluster-1"));
    assert_eq!(
        cluster_spiffe_id("cluster-1"),
        "spiffe://sluice/cluster/cluster-1"
    );
    assert!(info.not_after > now && info.not_before < now);
    assert_eq!(info.serial.len(), 32, "128-bit serial: {}", info.serial);
}

#[test]
fn the_csr_cannot_choose_its_own_names() {
    let now = SystemTime::now();
    let ca = Authority::generate(now).unwrap();
    // The CSR says cluster-2; the server signs for the cluster the token named.
    let (_key, csr) = new_key_and_csr("cluster-2").unwrap();
    let issued = ca.sign_cluster_csr(&csr, "cluster-1", now, HOUR).unwrap();
    assert_eq!(
        cert_info(&issued.chain_pem).unwrap().cluster.as_deref(),
        Some("cluster-1")
    );
}

#[test]
fn a_chain_from_another_ca_is_refused_by_us_and_by_openssl() {
    let now = SystemTime::now();
    let ours = Authority::generate(now).unwrap();
    let foreign = Authority::generate(now).unwrap();
    let (_key, csr) = new_key_and_csr("cluster-1").unwrap();
    let issued = foreign
        .sign_cluster_csr(&csr, "cluster-1", now, HOUR)
        .unwrap();

    let err = verify_chain(ours.root_pem(), &issued.chain_pem, now).unwrap_err();
    // Same subject names, other keys: webpki finds the "issuer" and its
    // signature does not match; with other names it is UnknownIssuer.
    let text = err.to_string();
    assert!(
        text.contains("BadSignature") || text.contains("UnknownIssuer"),
        "{text}"
    );
    let (ok, text) = openssl_verify(ours.root_pem(), &issued.chain_pem);
    assert!(!ok, "openssl accepted a foreign chain: {text}");
}

#[test]
fn an_expired_certificate_is_refused() {
    let now = SystemTime::now();
    let ca = Authority::generate(now - Duration::from_secs(10 * HOUR)).unwrap();
    let (_key, csr) = new_key_and_csr("cluster-1").unwrap();
    let issued = ca
        .sign_cluster_csr(&csr, "cluster-1", now - Duration::from_secs(3 * HOUR), HOUR)
        .unwrap();
    let err = verify_chain(ca.root_pem(), &issued.chain_pem, now).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
    let (ok, text) = openssl_verify(ca.root_pem(), &issued.chain_pem);
    assert!(!ok && text.contains("expired"), "openssl: {text}");
}

#[test]
fn a_tampered_csr_is_a_clear_error() {
    let now = SystemTime::now();
    let ca = Authority::generate(now).unwrap();
    let err = ca
        .sign_cluster_csr("not a csr", "cluster-1", now, HOUR)
        .unwrap_err();
    assert!(matches!(err, PkiError::BadCsr(_)), "{err}");

    // Flip one base64 character inside the signed body.
    let (_key, csr) = new_key_and_csr("cluster-1").unwrap();
    let mut bytes = csr.into_bytes();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let err = ca
        .sign_cluster_csr(&String::from_utf8(bytes).unwrap(), "cluster-1", now, HOUR)
        .unwrap_err();
    assert!(matches!(err, PkiError::BadCsr(_)), "{err}");
}

#[test]
fn the_authority_is_kept_on_disk_and_an_own_root_is_used() {
    let now = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let first = Authority::load_or_create(dir.path(), None, now).unwrap();
    let again = Authority::load_or_create(dir.path(), None, now).unwrap();
    assert_eq!(first.root_pem(), again.root_pem());
    assert_eq!(first.relay_pem(), again.relay_pem());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("root.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The user's own root (files): a new intermediate under it.
    let own = Authority::generate(now).unwrap();
    let own_dir = tempfile::tempdir().unwrap();
    own.save(own_dir.path()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let with_own = Authority::load_or_create(
        state.path(),
        Some((
            &own_dir.path().join("root.crt"),
            &own_dir.path().join("root.key"),
        )),
        now,
    )
    .unwrap();
    assert_eq!(with_own.root_pem(), own.root_pem());
    let (_key, csr) = new_key_and_csr("c").unwrap();
    let issued = with_own.sign_cluster_csr(&csr, "c", now, HOUR).unwrap();
    let (ok, text) = openssl_verify(own.root_pem(), &issued.chain_pem);
    assert!(ok, "{text}");
}

#[test]
fn renewal_is_due_at_half_life() {
    // notBefore is backdated by the clock skew allowance.
    let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let start = issued - Duration::from_secs(sluice_pki::CLOCK_SKEW_SECS);
    let end = issued + Duration::from_secs(100);
    let start_plus = |s| issued + Duration::from_secs(s);
    assert!(!renewal_due(start, end, start_plus(49)));
    assert!(renewal_due(start, end, start_plus(50)));
    assert!(renewal_due(start, end, end + Duration::from_secs(1)));
    let start = issued;
    assert!(renewal_due(start, end, start_plus(100)));
}
