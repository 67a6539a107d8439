//! The connector console in a real browser: headless Chromium (Debian's `chromium`
//! and `chromium-driver`) driven through WebDriver against `connector-host serve`,
//! the simulated Defender tenant and the simulated CVM. Every page visited is saved
//! as a screenshot in `target/console-screenshots/` (or `$CONSOLE_SCREENSHOTS`).

use connector_cvm_simulator::{CvmOptions, CvmSim};
use connector_e2e::kdi;
use connector_e2e::oracle;
use connector_e2e::service::{Api, Process, ADMIN_TOKEN};
use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// chromedriver on a free loopback port; stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect("chromedriver is not installed: install Debian's `chromium` and `chromium-driver` (.ci/run does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{url}/status")).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A browser session, with where its screenshots and downloads go.
struct Browser {
    client: Client,
    shots: PathBuf,
}

impl Browser {
    async fn open(driver: &Driver, profile: &std::path::Path, downloads: &std::path::Path, shots: PathBuf) -> Browser {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_file())
            .expect("chromium is not installed: install Debian's `chromium` (.ci/run does)");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // --no-sandbox: Chromium's sandbox cannot start as root (CI runs as root).
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display())],
                "prefs": {"download.default_directory": downloads.to_str().unwrap(), "download.prompt_for_download": false},
            }
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url)
            .await
            .expect("a Chromium session through chromedriver");
        std::fs::create_dir_all(&shots).unwrap();
        Browser { client, shots }
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn find(&self, css: &str) -> Element {
        match self.client.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => {
                self.shot("failed").await;
                let body = self.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
                panic!("no `{css}` on the page ({e}); see failed.png; the page reads:\n{body}")
            }
        }
    }

    async fn exists(&self, css: &str) -> bool {
        !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn fill(&self, css: &str, value: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    async fn value(&self, css: &str) -> String {
        self.find(css).await.prop("value").await.unwrap().unwrap_or_default()
    }

    /// Opens a `<details>` by clicking its summary, unless it is open already.
    async fn unfold(&self, css: &str) {
        if self.find(css).await.attr("open").await.unwrap().is_none() {
            self.click(&format!("{css} > summary")).await;
        }
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Waits until the script returns true.
    async fn until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if self.client.execute(script, vec![]).await.unwrap() == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                self.shot("failed").await;
                let body = self.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
                panic!("{what}: not seen within 90 s; the page reads:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn sign_in(&self, url: &str, token: &str) {
        self.client.goto(url).await.unwrap();
        self.fill("#token", token).await;
        self.click("#sign-in").await;
        self.find("#sign-out").await;
        self.until("signed in", "return !document.getElementById('top').hidden").await;
    }
}

fn screenshots() -> PathBuf {
    std::env::var_os("CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| connector_e2e::artifacts::target_dir().join("console-screenshots"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_verifies_and_runs_a_connector_and_a_viewer_only_reads() {
    let defender = DefenderSim::start(TenantSpec { seed: 12, devices: 30, rows: 600 }, SimOptions::default()).unwrap();
    let cvm = CvmSim::start(CvmOptions { run_duration: Duration::from_millis(800), ..CvmOptions::default() }).unwrap();
    let dir = kdi::temp_dir("console");
    let state = dir.join("state");
    let (serve, url) = tokio::task::block_in_place(|| {
        Process::serve(&state, &[], &[("CONNECTOR_HOST_ADMIN_TOKEN", ADMIN_TOKEN)]).unwrap_or_else(|e| panic!("{e}"))
    });
    let driver = tokio::task::block_in_place(Driver::start);
    let downloads = dir.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Browser::open(&driver, &dir.join("profile"), &downloads, screenshots()).await;
    let tenant = defender.tenant().clone();

    // Sign in, and the empty state points to Add Connector.
    b.client.goto(&url).await.unwrap();
    b.find("#token").await;
    b.shot("01-sign-in").await;
    b.fill("#token", "not-a-token").await;
    b.click("#sign-in").await;
    b.until(
        "a refused token is explained",
        "return document.getElementById('signin-error').textContent.includes('not accepted')",
    )
    .await;
    b.sign_in(&url, ADMIN_TOKEN).await;
    b.find("#empty-state").await;
    assert!(b.text("#empty-state").await.contains("No connectors yet"));
    b.shot("02-empty").await;

    // The catalogue, by section; Defender under Vulnerability Management.
    b.click("#add-connector").await;
    let section = b.find("section[aria-labelledby='s-vulnerability-management']").await;
    let card = section.find(Locator::Css("[data-plugin='defender-tvm']")).await.expect("Defender in its section");
    assert!(card.text().await.unwrap().contains("Microsoft Defender for Endpoint TVM"));
    assert!(b.exists("section[aria-labelledby='s-application-security'] [data-plugin='github-dependabot']").await);
    b.shot("03-catalogue").await;

    // The dialog, drawn from the plugin's fields.
    card.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
    b.find("#connector-dialog").await;
    assert_eq!(b.find("#f-client_secret").await.attr("type").await.unwrap().as_deref(), Some("password"));
    assert_eq!(b.value("#f-host").await, "api.securitycenter.microsoft.com", "host prefilled with its default");
    assert_eq!(b.find("#f-page_size").await.attr("type").await.unwrap().as_deref(), Some("number"));
    // Fields with choices (contract 0.4) are selects, the default chosen.
    assert_eq!(b.find("#f-cloud").await.prop("tagName").await.unwrap().as_deref(), Some("SELECT"));
    assert_eq!(b.value("#f-api_mode").await, "auto");
    // Scoping (issue 24): the minimum severity is a select of its choices; device
    // groups are text; each attribute tag is a yes/no choice, off by default.
    assert_eq!(b.find("#f-min_severity").await.prop("tagName").await.unwrap().as_deref(), Some("SELECT"));
    assert_eq!(b.value("#f-min_severity").await, "all");
    let severities = b.find("#f-min_severity").await.prop("textContent").await.unwrap().unwrap_or_default();
    assert!(["All", "Low", "Medium", "High", "Critical"].iter().all(|s| severities.contains(s)), "{severities}");
    assert!(b.exists("#f-device_groups").await && b.exists("#f-exclude_device_groups").await);
    assert!(b.exists("#f-min_severity_by_group").await);
    assert_eq!(b.value("#f-tag_exposure_level").await, "false");
    assert_eq!(b.value("#f-catalogue").await, "true", "the catalogue is on by default");
    let declared = tokio::task::block_in_place(|| Api::new(&url, Some(ADMIN_TOKEN)).get("/api/plugins").1);
    let declared = declared.as_array().unwrap().iter().find(|p| p["id"] == "defender-tvm").unwrap()["egress"]
        .as_array()
        .unwrap()
        .len();
    assert!(
        b.text("#egress-title").await.contains(&format!("{declared} declared origins")),
        "the declared egress is shown"
    );
    assert!(b.find("#egress").await.prop("textContent").await.unwrap().unwrap().contains("{login_host}"));
    b.shot("04-add-dialog").await;

    // A host that is not one is refused in the form, before anything is sent.
    b.fill("#f-name", "Defender prod").await;
    b.fill("#f-client_id", &tenant.client_id).await;
    b.fill("#f-client_secret", "a-wrong-secret").await;
    b.fill("#f-tenant_id", &tenant.tenant_id).await;
    b.fill("#f-host", "not a host").await;
    b.click("#save-verify").await;
    b.until(
        "the host field's error",
        "return document.getElementById('e-host').textContent.includes('Enter a host name')",
    )
    .await;

    // The plugin's own field errors appear on their fields (a 422 from the API).
    b.fill("#f-host", defender.base_url()).await;
    b.fill("#f-tenant_id", "not-a-guid").await;
    b.click("#save-verify").await;
    b.until(
        "the plugin's error on the tenant field",
        "return document.getElementById('e-tenant_id').textContent.includes('expected a GUID')",
    )
    .await;
    b.shot("04b-field-error").await;
    b.fill("#f-tenant_id", &tenant.tenant_id).await;

    // A wrong secret: saved, verify fails, the reason next to the secret, the form kept.
    b.unfold("#advanced").await;
    b.fill("#f-login_host", defender.base_url()).await;
    b.fill("#f-storage_host", defender.storage_url()).await;
    b.fill("#f-retry_delay_ms", "20").await;
    b.unfold("#connector-dialog details:not(#advanced)").await;
    b.fill("[name='cvm.api_host']", cvm.base_url()).await;
    b.fill("[name='cvm.api_key']", &cvm.options().api_key).await;
    b.fill("[name='cvm.connector_id']", &cvm.options().connector_id.to_string()).await;
    b.click("#save-verify").await;
    b.until(
        "the verify failure next to the secret",
        "return document.getElementById('e-client_secret').textContent.includes('AADSTS7000215')",
    )
    .await;
    assert_eq!(b.value("#f-client_secret").await, "a-wrong-secret", "the form keeps the secret typed");
    assert_eq!(b.value("#f-client_id").await, tenant.client_id);
    b.shot("05-verify-failed").await;

    // Corrected: Save and Verify succeeds, its checks shown, the connector listed.
    b.fill("#f-client_secret", &tenant.client_secret).await;
    b.click("#save-verify").await;
    b.find("#checks").await;
    let checks = b.text("#checks").await;
    assert!(checks.contains("token") && checks.contains("CVM"), "{checks}");
    assert!(b.text("#connectors").await.contains("Defender prod"));
    b.shot("06-connectors").await;

    // The connector's page: Run now, live progress, the summary and the chart.
    b.click("#connectors a").await;
    b.find("#run-now").await;
    assert!(b.text("#settings").await.contains("set"), "the secret reads as set");
    b.click("#run-now").await;
    b.until("a run in the history", "return document.querySelectorAll('#runs tbody tr').length === 1").await;
    // While it runs, its row shows what it is doing (the console polls the run).
    b.until(
        "live progress",
        "const row = document.querySelector('#runs tbody tr'); return !!row && !!row.querySelector('.status.running') && /(fetching|writing|delivering|vulnerability rows)/.test(row.textContent)",
    )
    .await;
    b.shot("07-running").await;
    b.until("the run succeeded", "return !!document.querySelector('#runs .status.succeeded')").await;
    b.find("#chart circle").await;
    let expected = oracle::expected_live(&defender.tenant());
    let row = b.text("#runs tbody tr").await;
    assert!(row.contains(&expected.assets.len().to_string()), "assets in the history: {row}");

    // A second run after vulnerabilities were fixed on some devices: the chart shows
    // both. (Quicker CVM polling for it, set through the API, which keeps the rest.)
    let fixed: Vec<String> = expected.assets.keys().take(5).cloned().collect();
    defender.update_tenant(|t| t.remove_rows(|r| fixed.contains(&r.device_id)));
    let id = b.find("[data-connector-id]").await.attr("data-connector-id").await.unwrap().unwrap();
    let patched = tokio::task::block_in_place(|| {
        Api::new(&url, Some(ADMIN_TOKEN)).call(
            "PATCH",
            &format!("/api/connectors/{id}"),
            Some(json!({"cvm": {"poll_interval_ms": 50}})),
        )
    });
    assert_eq!(patched.0, 200, "{}", patched.1);
    b.click("#run-now").await;
    b.until("two runs succeeded", "return document.querySelectorAll('#runs .status.succeeded').length === 2").await;
    b.until("both runs in the chart", "return document.querySelectorAll('#chart circle').length === 4").await;
    // Contract 0.4: after a delivered baseline the next run reads changes; clearing
    // the state makes it a baseline again.
    assert!(b.text("#next-mode").await.contains("Next run: incremental"), "{}", b.text("#incremental").await);
    b.click("#clear-state").await;
    b.until(
        "the next run is a baseline",
        "return /Next run: full/.test(document.querySelector('#next-mode').textContent)",
    )
    .await;
    b.shot("08-connector").await;

    // Edit: the secret reads as set and is kept when left empty; a schedule's next
    // due times are spelled out.
    b.click("#edit").await;
    b.find("#connector-dialog").await;
    assert_eq!(b.value("#f-client_secret").await, "", "a stored secret is never sent to the browser");
    let placeholder = b.find("#f-client_secret").await.attr("placeholder").await.unwrap().unwrap_or_default();
    assert!(placeholder.contains("leave empty to keep"), "{placeholder}");
    b.fill("#f-schedule", "0 3 * * *").await;
    b.click("#save-verify").await;
    b.find("#next-runs").await;
    assert!(b.text("#next-runs").await.contains("03:00 UTC"));
    assert!(b.text("#checks").await.contains("token"), "verified with the kept secret");
    b.shot("08b-edited").await;

    // The run: its figures, its reconciliation, its masked log, its KDI file downloaded.
    // The first run, the baseline: every row read, some skipped.
    let run_id = b.find("#runs tbody tr:last-child").await.attr("data-run").await.unwrap().unwrap();
    let (_, run) =
        tokio::task::block_in_place(|| Api::new(&url, Some(ADMIN_TOKEN)).get(&format!("/api/runs/{run_id}")));
    let summary = &run["summary"];
    let skipped: u64 = summary["skipped"].as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    let shown_skipped = b.text("#runs tbody tr:last-child td[data-skipped]").await;
    assert_eq!(
        shown_skipped.chars().filter(char::is_ascii_digit).collect::<String>(),
        skipped.to_string(),
        "rows skipped in the history"
    );
    b.click("#runs tbody tr:last-child a").await;
    b.find("#files").await;
    let facts = b.text("#run-facts").await;
    assert!(facts.contains("Vulnerability rows fetched"), "counters carry the plugin's labels: {facts}");
    assert!(facts.contains("Devices fetched") && !facts.contains("devices fetched"), "{facts}");
    let reconciliation = b.text("#reconciliation").await;
    for line in ["Rows read from the source", "Rows skipped", "Assets written", "Vulnerabilities written"] {
        assert!(reconciliation.contains(line), "`{line}` not in the reconciliation:\n{reconciliation}");
    }
    assert!(!summary["skipped"].as_object().unwrap().is_empty(), "the tenant has rows to skip: {summary}");
    for (reason, count) in summary["skipped"].as_object().unwrap() {
        let shown = format!("{reason}\t{}", count.as_u64().unwrap());
        let numbered = b
            .client
            .execute(
                &format!(
                "return [...document.querySelectorAll('#reconciliation tr.reason')].some((tr) => tr.textContent.includes({reason:?}) && tr.querySelector('td').textContent.replace(/\\D/g, '') === '{}')",
                    count.as_u64().unwrap()
                ),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(numbered, json!(true), "{shown} not in the reconciliation:\n{reconciliation}");
    }
    let log = b.text("#log").await;
    for line in [
        "fetching devices",
        "writing the KDI files",
        "delivering the files to CVM",
        "CVM connector run",
        "run succeeded",
    ] {
        assert!(log.contains(line), "`{line}` not in the run's log:\n{log}");
    }
    let name = b.find("#files button").await.attr("data-file").await.unwrap().unwrap();
    b.click("#files button").await;
    let file = downloads.join(&name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !file.is_file() {
        assert!(Instant::now() < deadline, "{name} was not downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let downloaded: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    kdi::assert_valid(&name, &downloaded);
    b.shot("09-run").await;

    // A viewer sees everything but the buttons that change things.
    let api = Api::new(&url, Some(ADMIN_TOKEN));
    let viewer =
        tokio::task::block_in_place(|| api.post("/api/tokens", json!({"name": "auditor", "role": "viewer"})).1);
    b.click("#sign-out").await;
    b.find("#token").await;
    b.sign_in(&url, viewer["token"].as_str().unwrap()).await;
    b.find("#connectors").await;
    assert!(!b.exists("#add-connector").await);
    b.click("#connectors a").await;
    b.find("#runs").await;
    for button in ["#run-now", "#edit", "#delete", "#approve"] {
        assert!(!b.exists(button).await, "a viewer sees {button}");
    }
    b.shot("10-viewer").await;

    // A narrow window: the page reflows instead of scrolling sideways.
    b.client.set_window_size(420, 900).await.unwrap();
    b.until("no sideways scrolling", "return document.documentElement.scrollWidth <= window.innerWidth + 1").await;
    b.shot("11-narrow").await;

    b.client.close().await.unwrap();
    drop(serve);
}
