//! The browser harness of the dashboard's tests: Debian's `chromium`
//! driven through `chromedriver` over WebDriver (`fantoccini`). Used by
//! `control/server/tests/dashboard_browser.rs` and the mesh's dashboard
//! test.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator,
    actions::{InputSource, KeyAction, KeyActions},
    key::Key,
    wd::WebDriverCompatibleCommand,
};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether the browser is installed. Under CI (`CI=true`) its absence
/// panics; elsewhere it is said on stderr and the caller skips.
pub fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{} missing: install Debian's chromium and chromium-driver (`make setup` does)",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED (not under CI): {message}");
    false
}

/// `target/dashboard-screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/dashboard-screenshots");
    dir
}

/// Chromedriver's log endpoint (`/se/log`, what Selenium's `get_log`
/// calls): the browser console since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// A headless Chromium session. Dropping it kills chromedriver's process
/// group, so a failed test leaves no browser behind.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group; the browser it starts
        // is in it.
        let group = nix::unistd::Pid::from_raw(self.driver.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.driver.wait();
    }
}

impl Browser {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let serde_json::Value::Object(capabilities) = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                // Root in a container: no sandbox; no GPU here.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }) else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session through chromedriver");
        Self { client, driver }
    }

    /// Console entries of level SEVERE (errors, failed loads, CSP
    /// violations) since the last call.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver's browser log (/se/log)");
        log.as_array()
            .expect("a log is a list of entries")
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Opens `base` + `path`, checks the page shows every `expected` text
    /// and the no-auth banner and logged no console error, and writes
    /// `NAME.png`. Returns the page's text.
    pub async fn visit(&self, base: &str, path: &str, name: &str, expected: &[&str]) -> String {
        self.client
            .goto(&format!("{base}{path}"))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        let text = self.text("body").await;
        for want in expected {
            assert!(
                text.contains(want),
                "{path}: {want:?} not shown in:\n{text}"
            );
        }
        assert!(
            text.contains("Authentication disabled."),
            "{path}: no no-auth banner"
        );
        let errors = self.console_errors().await;
        assert!(errors.is_empty(), "{path}: console errors: {errors:#?}");
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{path}: not a PNG");
        std::fs::write(screenshot_dir().join(format!("{name}.png")), png)
            .expect("write the screenshot");
        text
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .text()
            .await
            .expect("element text")
    }

    /// Clicks the first element matching `css`, then waits until the URL
    /// (path and query) satisfies `arrived`.
    pub async fn click_to(&self, css: &str, arrived: impl Fn(&url::Url) -> bool) -> url::Url {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
            .click()
            .await
            .expect("click");
        self.wait_url(css, arrived).await
    }

    /// Waits (5 s at most) until the current URL satisfies `arrived`.
    pub async fn wait_url(&self, what: &str, arrived: impl Fn(&url::Url) -> bool) -> url::Url {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let url = self.client.current_url().await.expect("current URL");
            if arrived(&url) {
                return url;
            }
            assert!(Instant::now() < deadline, "{what}: still at {url}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses and releases `key` (keyboard navigation).
    pub async fn press(&self, key: Key) {
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key.into() })
            .then(KeyAction::Up { value: key.into() });
        self.client
            .perform_actions(keys)
            .await
            .expect("key actions");
    }

    /// The `href` of the focused element after each of `tabs` Tab presses
    /// from the top of the page.
    pub async fn tab_order(&self, tabs: usize) -> Vec<String> {
        let mut hrefs = Vec::new();
        for _ in 0..tabs {
            self.press(Key::Tab).await;
            let active = self.client.active_element().await.expect("focused element");
            hrefs.push(active.attr("href").await.ok().flatten().unwrap_or_default());
        }
        hrefs
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// The path and query of `url` (what the dashboard's links hold).
pub fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}
