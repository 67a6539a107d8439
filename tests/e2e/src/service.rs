//! The platform service as tests use it: `connector-host serve` and `worker`
//! processes, an API client that keeps every answer (to look for secrets in them),
//! and a PostgreSQL server of the test's own.

use crate::artifacts::host_binary;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Defender connector's settings for a simulated tenant (short retries).
pub fn defender_settings(sim: &connector_simulators::defender::DefenderSim) -> Value {
    let t = sim.tenant();
    serde_json::json!({
        "client_id": t.client_id, "client_secret": t.client_secret, "tenant_id": t.tenant_id,
        "host": sim.base_url(), "login_host": sim.base_url(), "storage_host": sim.storage_url(),
        "page_size": 500, "retry_delay_ms": 20, "max_retries": 2,
    })
}

/// A connector's CVM part for a simulated CVM (quick polling).
pub fn cvm_settings(cvm: &connector_cvm_simulator::CvmSim) -> Value {
    serde_json::json!({"api_host": cvm.base_url(), "api_key": cvm.options().api_key,
        "connector_id": cvm.options().connector_id, "poll_interval_ms": 50, "retry_delay_ms": 50})
}

/// The admin token tests start the service with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running `connector-host` service process (`serve` or `worker`); killed on drop.
pub struct Process {
    pub child: Child,
    /// What it printed on stdout, line by line.
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
}

impl Process {
    /// Starts `connector-host ARGS` with `env`, its log in `log`, and waits for the
    /// first stdout line that contains `ready`.
    pub fn start(args: &[&str], env: &[(&str, &str)], log: &Path, ready: &str) -> Result<Process, String> {
        let mut command = Command::new(host_binary());
        command.args(args).env_remove("RUST_LOG").env_remove("CONNECTOR_HOST_SECRET_KEY");
        command.env_remove("CONNECTOR_HOST_ADMIN_TOKEN").env_remove("CONNECTOR_HOST_DATABASE");
        for (k, v) in env {
            command.env(k, v);
        }
        let err = std::fs::File::create(log).unwrap();
        command.stdout(Stdio::piped()).stderr(err);
        let mut child = command.spawn().expect("start connector-host");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (lines, out) = (stdout.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut process = Process { child, stdout, log: log.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if process.stdout.lock().unwrap().iter().any(|l| l.contains(ready)) {
                return Ok(process);
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(format!("connector-host exited ({status}) before it was ready:\n{}", process.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "connector-host did not print `{ready}` within 2 minutes:\n{}",
                    process.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `serve` on a free loopback port: the process and its base URL.
    pub fn serve(state_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<(Process, String), String> {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--state-dir", state_dir.to_str().unwrap()];
        args.push("--allow-insecure-loopback");
        args.extend_from_slice(extra);
        let log = state_dir.with_extension(format!("serve-{}.log", unique()));
        let process = Process::start(&args, env, &log, "listening on http://")?;
        let line = process.stdout.lock().unwrap().iter().find(|l| l.contains("listening on")).cloned().unwrap();
        let url = line.split("listening on ").nth(1).unwrap().trim().to_owned();
        Ok((process, url))
    }

    /// `worker` on its own state directory, with `extra` arguments (a database, a
    /// lease): the process and the name it works under.
    pub fn worker(state_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<(Process, String), String> {
        let mut args = vec!["worker", "--state-dir", state_dir.to_str().unwrap(), "--allow-insecure-loopback"];
        args.extend_from_slice(extra);
        let log = state_dir.with_extension(format!("worker-{}.log", unique()));
        let process = Process::start(&args, env, &log, "started")?;
        // "connector-host worker NAME started (...)": the name the runs' `worker` field shows.
        let line = process.stdout.lock().unwrap().iter().find(|l| l.contains("started")).cloned().unwrap();
        let name = line.split_whitespace().nth(2).unwrap().to_owned();
        Ok((process, name))
    }

    /// Everything the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGKILL`).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit; its status.
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "connector-host did not exit within {within:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An API client with a token; every answer's text is kept.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: Option<String>,
    client: reqwest::blocking::Client,
    pub answers: Arc<Mutex<Vec<String>>>,
}

impl Api {
    pub fn new(base: &str, token: Option<&str>) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            client: reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap(),
            answers: Default::default(),
        }
    }

    /// The same service with another token (answers kept together).
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api { token: token.map(str::to_owned), ..self.clone() }
    }

    /// Sends a request; the status and the body (JSON, or a string of the text).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call_text(method, path, body);
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub fn call_text(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().expect("the service answers");
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        self.answers.lock().unwrap().push(text.clone());
        (status, text)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    /// Polls a run until it ends (or `within` passes); its last view.
    pub fn wait_for_run(&self, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, run) = self.get(&format!("/api/runs/{id}"));
            assert_eq!(status, 200, "{run}");
            if run["status"] == "succeeded" || run["status"] == "failed" {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} did not end within {within:?}: {run}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A PostgreSQL server of the test's own, in a temporary directory on a free
/// loopback port, run as the `postgres` user when the tests run as root (PostgreSQL
/// refuses root). Stopped on drop.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    as_root: bool,
    pub url: String,
}

impl Postgres {
    pub fn start(name: &str) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut found: Vec<PathBuf> = versions.filter_map(|v| v.ok().map(|v| v.path().join("bin"))).collect();
                found.sort();
                found.into_iter().rev().find(|b| b.join("initdb").is_file())
            })
            .expect("PostgreSQL's server is not installed: install Debian's `postgresql` package (.ci/run does)");
        let dir = std::env::temp_dir().join(format!("connector-pg-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        std::fs::create_dir_all(&dir).unwrap();
        let as_root = unsafe { libc::geteuid() } == 0;
        if as_root {
            let ok = Command::new("chown").args(["-R", "postgres:postgres", dir.to_str().unwrap()]).status().unwrap();
            assert!(ok.success(), "chown the PostgreSQL directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg =
            Postgres { dir: dir.clone(), bin, as_root, url: format!("postgres://postgres@127.0.0.1:{port}/postgres") };
        let data = dir.join("data");
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"]);
        let options = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", dir.display());
        let log = dir.join("postgres.log");
        pg.run("pg_ctl", &["-D", data.to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "start"]);
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let output = if self.as_root {
            Command::new("runuser").args(["-u", "postgres", "--", path.to_str().unwrap()]).args(args).output()
        } else {
            Command::new(&path).args(args).output()
        }
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Not `run`: a failure here must not panic while a test is already failing.
        let data = self.dir.join("data");
        let pg_ctl = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if self.as_root {
            Command::new("runuser").args(["-u", "postgres", "--", pg_ctl.to_str().unwrap()]).args(args).output()
        } else {
            Command::new(&pg_ctl).args(args).output()
        };
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// An S3-protocol server of the test's own on a free loopback port: moto's server
/// (`pip install 'moto[server]'`, which `.ci/run` does), reached over plain HTTP with
/// path-style requests as S3-compatible stores are. Stopped on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 is needed for the S3 server");
        let mut server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::blocking::get(&server.endpoint).is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("the S3 server (moto) exited ({status}): install it with pip install 'moto[server]==5.2.5' (.ci/run does)");
            }
            assert!(Instant::now() < deadline, "the S3 server (moto) did not answer within a minute");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates a bucket (the server takes unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let answer = reqwest::blocking::Client::new().put(format!("{}/{bucket}", self.endpoint)).send().unwrap();
        assert!(answer.status().is_success(), "create bucket {bucket}: {}", answer.status());
    }

    /// The keys in `bucket` under `prefix` (ListObjectsV2, one page).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint);
        let xml = reqwest::blocking::get(url).unwrap().text().unwrap();
        xml.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_owned).collect()
    }

    /// The ETag of each key in `bucket` under `prefix`: an object put in parts has
    /// one ending in `-N` (N parts), one put whole a plain MD5.
    pub fn etags(&self, bucket: &str, prefix: &str) -> Vec<(String, String)> {
        let url = format!("{}/{bucket}?list-type=2&prefix={prefix}", self.endpoint);
        let xml = reqwest::blocking::get(url).unwrap().text().unwrap();
        let between = |text: &str, open: &str, close: &str| {
            text.split(open).nth(1).and_then(|t| t.split(close).next()).unwrap_or_default().to_owned()
        };
        xml.split("<Contents>")
            .skip(1)
            .map(|c| {
                (between(c, "<Key>", "</Key>"), between(c, "<ETag>", "</ETag>").replace("&#34;", "").replace('"', ""))
            })
            .collect()
    }

    /// Forgets every bucket and object, as a store that lost its bucket.
    pub fn reset(&self) {
        let answer = reqwest::blocking::Client::new().post(format!("{}/moto-api/reset", self.endpoint)).send().unwrap();
        assert!(answer.status().is_success(), "reset: {}", answer.status());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
