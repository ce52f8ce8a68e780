//! Headless Debian Chromium for the console's end-to-end tests, driven over W3C WebDriver.
//!
//! Each [`Browser`] owns its own `chromedriver` (on a free port, in its own process group) and
//! one session of `/usr/bin/chromium` with a fresh profile, so tests never share cookies and a
//! dropped browser leaves no process behind. fantoccini is async; a current-thread tokio runtime
//! per browser runs it behind the blocking helpers the rest of this crate uses. Every lookup
//! polls with a generous deadline and panics naming what it waited for, the page it was on and
//! (for a failing test) a screenshot under `target/console-screenshots/`. A machine without
//! Chromium or chromedriver fails loudly with the install command, never skips.

use crate::http::Http;
use crate::process::Proc;
use crate::{ports, wait};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tempfile::TempDir;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "apt-get install -y chromium chromium-driver (scripts/test.sh installs them)";

/// How long a lookup or condition may take before the test fails. Generous: two cores are
/// shared by a whole test suite, and pages call the collector and alerting APIs.
pub const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

static FAILURE_SHOTS: AtomicUsize = AtomicUsize::new(0);

/// Chromium's flags: headless, and quiet on the network — without the background-networking
/// flags Chromium keeps calling home (component updates, sync, QUIC probes), which on a closed
/// intranet is a stream of refused connections.
fn chromium_args(profile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1920,1080",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// `target/console-screenshots/`: the directory of the test artifacts, beside the target dir's
/// profile directories (the running test executable lives in `target/<profile>/deps`).
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "deps"))
        .and_then(|deps| deps.parent()?.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshots")
}

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: RefCell<Proc>,
    base: String,
    _profile: TempDir,
}

impl Browser {
    /// A new headless Chromium whose relative URLs (`/ui/…`) go to `base_url`.
    pub fn start(base_url: &str) -> Browser {
        for (path, what) in [(CHROMIUM, "Chromium"), (CHROMEDRIVER, "chromedriver")] {
            assert!(Path::new(path).is_file(), "{what} is missing at {path}: install it with `{INSTALL}`");
        }
        let profile = tempfile::Builder::new().prefix("tz-chromium-").tempdir().expect("tempdir for the profile");
        let port = ports::free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}")).arg("--allowed-ips=127.0.0.1");
        // Its own process group: dropping the browser kills chromedriver and every Chromium
        // process it started, even when the session could not be closed.
        cmd.process_group(0);
        let mut driver = Proc::spawn("chromedriver", cmd, &profile.path().join("logs"));
        let url = format!("http://127.0.0.1:{port}");
        let http = Http::new();
        wait::until(&format!("chromedriver ready on {url}"), PATIENCE, Duration::from_millis(100), |last| {
            driver.assert_running();
            match http.get(&format!("{url}/status"), None, &[]) {
                Ok(r) if r.status == 200 && r.json()["value"]["ready"] == true => Some(()),
                Ok(r) => {
                    *last = format!("{} {}", r.status, r.body);
                    None
                }
                Err(e) => {
                    *last = e.to_string();
                    None
                }
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            // A hospital's browsers ask for Chinese; the console must start in zh-CN for them.
            json!({"binary": CHROMIUM, "args": chromium_args(&profile.path().join("profile")),
                   "prefs": {"intl.accept_languages": "zh-CN,zh"}}),
        );
        let client = rt
            .block_on(ClientBuilder::new(HttpConnector::new()).capabilities(caps).connect(&url))
            .unwrap_or_else(|e| {
                kill_group(driver.pid());
                panic!("chromedriver could not start a Chromium session ({e}); is `{INSTALL}` done?\n{}", driver.logs())
            });
        let b = Browser {
            rt,
            client: Some(client),
            driver: RefCell::new(driver),
            base: base_url.trim_end_matches('/').to_string(),
            _profile: profile,
        };
        b.fit_viewport(1920, 1080);
        b
    }

    /// Makes the page area (not the window) `w`×`h` CSS pixels: 1920×1080 for a wall screen
    /// (the default), 390×844 for a phone.
    pub fn fit_viewport(&self, w: u32, h: u32) {
        let chrome = self
            .script("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];", vec![]);
        let (dw, dh) = (chrome[0].as_u64().unwrap_or(0) as u32, chrome[1].as_u64().unwrap_or(0) as u32);
        self.run("set window size", self.client().set_window_size(w + dw, h + dh));
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("session open")
    }

    fn run<T>(&self, what: &str, f: impl std::future::Future<Output = Result<T, CmdError>>) -> T {
        match self.rt.block_on(f) {
            Ok(v) => v,
            Err(e) => panic!("browser: {what} failed: {e} (page {})", self.url()),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The absolute URL of `path` (absolute URLs pass through).
    pub fn abs(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Opens `path` (relative to the base URL) and waits for the page load.
    pub fn goto(&self, path: &str) {
        let url = self.abs(path);
        self.run(&format!("goto {url}"), self.client().goto(&url));
    }

    /// Reloads the current page.
    pub fn reload(&self) {
        self.run("reload", self.client().refresh());
    }

    /// The current URL, or a description of why it could not be read (for messages).
    pub fn url(&self) -> String {
        match self.rt.block_on(self.client().current_url()) {
            Ok(u) => u.to_string(),
            Err(e) => format!("<url unknown: {e}>"),
        }
    }

    /// Path and query of the current URL (`/ui/login?next=…`).
    pub fn path(&self) -> String {
        match self.rt.block_on(self.client().current_url()) {
            Ok(u) => match u.query() {
                Some(q) => format!("{}?{q}", u.path()),
                None => u.path().to_string(),
            },
            Err(e) => format!("<url unknown: {e}>"),
        }
    }

    /// Waits until the current path starts with `prefix` and returns it.
    pub fn wait_for_path(&self, prefix: &str) -> String {
        self.wait_until(&format!("the browser to reach {prefix}"), |b, last| {
            let p = b.path();
            *last = p.clone();
            p.starts_with(prefix).then_some(p)
        })
    }

    /// Waits until the browser is on exactly `path` (query aside) and returns it. Unlike
    /// [`Browser::wait_for_path`], `/ui/` does not match `/ui/totp`, so it also waits out a
    /// redirect that has not happened yet.
    pub fn wait_for_page(&self, path: &str) -> String {
        self.wait_until(&format!("the browser to reach exactly {path}"), |b, last| {
            let p = b.path();
            *last = p.clone();
            (p.split('?').next() == Some(path)).then_some(p)
        })
    }

    /// Polls `f` (every 200 ms, up to [`PATIENCE`]) until it returns `Some`; `last` says what
    /// was seen for the failure message.
    pub fn wait_until<T>(&self, what: &str, mut f: impl FnMut(&Browser, &mut String) -> Option<T>) -> T {
        wait::until(what, PATIENCE, POLL, |last| {
            let v = f(self, last);
            if v.is_none() {
                self.check_driver();
            }
            v
        })
    }

    fn check_driver(&self) {
        // A dead chromedriver would otherwise look like an element that never appears.
        self.driver.borrow_mut().assert_running();
    }

    /// The first element matching `css`, now (no waiting).
    pub fn try_find(&self, css: &str) -> Option<Element> {
        match self.rt.block_on(self.client().find(Locator::Css(css))) {
            Ok(e) => Some(e),
            Err(e) if e.is_no_such_element() => None,
            Err(e) => panic!("browser: find {css:?} failed: {e} (page {})", self.url()),
        }
    }

    /// Every element matching `css`, now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.run(&format!("find_all {css:?}"), self.client().find_all(Locator::Css(css)))
    }

    /// Waits for an element matching `css`.
    pub fn find(&self, css: &str) -> Element {
        self.wait_until(&format!("element {css:?} on {}", self.path()), |b, last| {
            *last = b.path();
            b.try_find(css)
        })
    }

    /// Waits for the element with this `id`.
    pub fn find_id(&self, id: &str) -> Element {
        self.find(&format!("[id=\"{id}\"]"))
    }

    /// Whether an element matching `css` exists and is displayed, now.
    pub fn visible(&self, css: &str) -> bool {
        match self.try_find(css) {
            Some(e) => match self.rt.block_on(e.is_displayed()) {
                Ok(v) => v,
                Err(e) if e.is_stale_element_reference() => false,
                Err(e) => panic!("browser: is_displayed {css:?} failed: {e}"),
            },
            None => false,
        }
    }

    /// Waits until an element matching `css` is displayed.
    pub fn wait_visible(&self, css: &str) -> Element {
        self.wait_until(&format!("{css:?} visible on {}", self.path()), |b, last| {
            *last = b.path();
            if b.visible(css) { b.try_find(css) } else { None }
        })
    }

    /// Replaces the value of the input matching `css` with `text`.
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.run(&format!("clear {css:?}"), el.clear());
        self.run(&format!("type into {css:?}"), el.send_keys(text));
    }

    /// Clicks the element matching `css` once it is there.
    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.run(&format!("click {css:?}"), el.click());
    }

    /// Picks `value` in the `<select>` matching `css`.
    pub fn select(&self, css: &str, value: &str) {
        let el = self.find(css);
        self.run(&format!("select {value:?} in {css:?}"), el.select_by_value(value));
    }

    /// The rendered text of the element matching `css` (waits for it).
    pub fn text(&self, css: &str) -> String {
        let el = self.find(css);
        self.run(&format!("text of {css:?}"), el.text())
    }

    /// The text of the element matching `css` now, `None` when there is none (or the page
    /// changed under it): for conditions polled while pages navigate.
    pub fn try_text(&self, css: &str) -> Option<String> {
        self.try_find(css).and_then(|e| self.rt.block_on(e.text()).ok())
    }

    /// An attribute of the element matching `css` now, `None` when there is no such element
    /// or attribute.
    pub fn try_attr(&self, css: &str, name: &str) -> Option<String> {
        self.try_find(css).and_then(|e| self.rt.block_on(e.attr(name)).ok().flatten())
    }

    /// The text of the whole page body, now ("" while a page is loading).
    pub fn body_text(&self) -> String {
        self.try_text("body").unwrap_or_default()
    }

    /// Waits until the page body shows `needle`.
    pub fn wait_text(&self, needle: &str) -> String {
        self.wait_until(&format!("text {needle:?} on the page"), |b, last| {
            let t = b.body_text();
            *last = format!("{} «{}»", b.path(), t.chars().take(600).collect::<String>());
            t.contains(needle).then_some(t)
        })
    }

    /// An attribute of the element matching `css` (waits for the element).
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        let el = self.find(css);
        self.run(&format!("attribute {name} of {css:?}"), el.attr(name))
    }

    /// Runs `script` in the page (`arguments[i]` are `args`) and returns its result.
    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.run("execute script", self.client().execute(script, args))
    }

    /// A cookie's value (HttpOnly ones too: WebDriver sees every cookie of the page's origin).
    pub fn cookie(&self, name: &str) -> Option<String> {
        match self.rt.block_on(self.client().get_named_cookie(name)) {
            Ok(c) => Some(c.value().to_string()),
            Err(e) if e.is_no_such_cookie() => None,
            Err(e) => panic!("browser: cookie {name} failed: {e}"),
        }
    }

    /// The text of an open `alert()`/`confirm()`, if one is open.
    pub fn open_alert(&self) -> Option<String> {
        match self.rt.block_on(self.client().get_alert_text()) {
            Ok(t) => Some(t),
            Err(e) if e.is_no_such_alert() => None,
            Err(e) => panic!("browser: reading the alert state failed: {e}"),
        }
    }

    /// Accepts an open `confirm()` (for buttons with `data-confirm`).
    pub fn accept_alert(&self) {
        self.run("accept alert", self.client().accept_alert());
    }

    /// Saves a PNG of the viewport as `target/console-screenshots/<name>.png` and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run(&format!("screenshot {name}"), self.client().screenshot());
        assert!(png.starts_with(b"\x89PNG"), "screenshot {name} is not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Logs in through the login form (no captcha) and waits for the login page to go away.
    pub fn login(&self, username: &str, password: &str) {
        self.submit_login(username, password);
        self.wait_until(&format!("{username} to get past the login page"), |b, last| {
            let p = b.path();
            let err = b.try_text("#login-error").unwrap_or_default();
            *last = format!("{p} error={err:?}");
            (!p.starts_with("/ui/login")).then_some(())
        });
    }

    /// Fills and submits the login form without waiting for the outcome.
    pub fn submit_login(&self, username: &str, password: &str) {
        if !self.path().starts_with("/ui/login") {
            self.goto("/ui/login");
        }
        self.type_into("#username", username);
        self.type_into("#password", password);
        self.click("#login-submit");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(c) = &self.client
        {
            // The page a failing test was looking at, as an artifact beside the others.
            let test = std::thread::current().name().unwrap_or("test").replace("::", "-");
            let n = FAILURE_SHOTS.fetch_add(1, Ordering::Relaxed);
            if let Ok(Ok(png)) =
                self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), c.screenshot()).await })
            {
                let dir = screenshot_dir();
                let path = dir.join(format!("FAILED-{test}-{n}.png"));
                if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, png)).is_ok() {
                    eprintln!("browser: screenshot of the failing page: {} (was at {})", path.display(), self.url());
                }
            }
        }
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), c.close()).await });
        }
        kill_group(self.driver.borrow().pid());
    }
}

/// SIGKILL to chromedriver's process group: Chromium and its helper processes too.
fn kill_group(driver_pid: u32) {
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{driver_pid}")]).status();
}
