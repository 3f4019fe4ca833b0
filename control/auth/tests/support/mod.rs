//! Test rigs: a real OpenID provider (npm `oidc-provider`, installed by
//! scripts/setup.sh) and an HTTP client that logs in through it.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use reqwest::{Client, StatusCode, header};
use serde_json::json;

/// Where scripts/setup.sh installs the provider (override with
/// `SLUICE_OIDC_PROVIDER_DIR`).
const DEFAULT_PROVIDER_DIR: &str = "/opt/sluice-test/oidc";

pub struct OidcProvider {
    child: Child,
    pub issuer: String,
    _dir: tempfile::TempDir,
}

impl OidcProvider {
    /// Starts the provider on a free loopback port with one confidential
    /// client and the given users' groups.
    pub fn start(
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        groups: serde_json::Value,
    ) -> Self {
        let modules = std::env::var("SLUICE_OIDC_PROVIDER_DIR")
            .unwrap_or_else(|_| DEFAULT_PROVIDER_DIR.into());
        assert!(
            Path::new(&modules)
                .join("node_modules/oidc-provider/package.json")
                .exists(),
            "npm oidc-provider is not installed in {modules}: run scripts/setup.sh"
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("provider.json");
        std::fs::write(
            &config,
            json!({
                "modules": modules,
                "port": port,
                "clients": [{
                    "client_id": client_id,
                    "client_secret": client_secret,
                    "redirect_uris": [redirect_uri],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                }],
                "groups": groups,
            })
            .to_string(),
        )
        .unwrap();
        // Also included by the dashboard's tests: a path valid from both crates.
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../auth/tests/oidc/provider.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is not installed: run scripts/setup.sh");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("oidc-provider did not start");
        let issuer = line
            .strip_prefix("listening ")
            .expect("provider's first line")
            .to_string();
        Self {
            child,
            issuer,
            _dir: dir,
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser-like client: cookie jar, redirects followed by hand.
pub fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(response: &reqwest::Response, base: &str) -> String {
    let loc = response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    if loc.starts_with('/') {
        format!("{base}{loc}")
    } else {
        loc
    }
}

fn origin(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    u.origin().ascii_serialization()
}

/// `attr="value"` after `from` in `html`.
fn attribute(html: &str, from: &str, attr: &str) -> Option<String> {
    let start = html.find(from)?;
    let rest = &html[start..];
    let at = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[at..].find('"')?;
    Some(
        rest[at..at + end]
            .replace("&amp;", "&")
            .replace("&#x2F;", "/"),
    )
}

/// Runs the whole code flow from `GET {app}/auth/login?return_to=/page`
/// through the provider's login (and consent) forms as `user`. Returns the
/// callback URL the provider sent back and the app's final response.
pub async fn log_in(client: &Client, app: &str, user: &str) -> (String, reqwest::Response) {
    let callback = until_callback(client, app, user).await;
    let done = client.get(&callback).send().await.unwrap();
    (callback, done)
}

/// The code flow up to (not including) the app's callback: its URL.
pub async fn until_callback(client: &Client, app: &str, user: &str) -> String {
    let mut response = client
        .get(format!("{app}/auth/login?return_to=/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "login starts with a redirect"
    );
    let mut url = location(&response, app);
    assert!(
        url.contains("code_challenge_method=S256"),
        "PKCE S256: {url}"
    );
    assert!(url.contains("nonce=") && url.contains("state="), "{url}");
    for _ in 0..12 {
        if url.starts_with(&format!("{app}/auth/callback")) {
            return url;
        }
        response = client.get(&url).send().await.unwrap();
        if response.status().is_redirection() {
            url = location(&response, &origin(&url));
            continue;
        }
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let base = origin(&url);
        let html = response.text().await.unwrap();
        let action =
            attribute(&html, "<form", "action").unwrap_or_else(|| panic!("no form in {html}"));
        let prompt = attribute(&html, "name=\"prompt\"", "value").expect("prompt field");
        let mut fields = vec![("prompt", prompt.clone())];
        if prompt == "login" {
            fields.push(("login", user.to_string()));
            fields.push(("password", "any".to_string()));
        }
        response = client
            .post(if action.starts_with('/') {
                format!("{base}{action}")
            } else {
                action
            })
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "{prompt} form: {}",
            response.status()
        );
        url = location(&response, &base);
    }
    panic!("the login did not come back to the app");
}
