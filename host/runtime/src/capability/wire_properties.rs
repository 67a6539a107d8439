//! The property the wire form exists for: whatever a plugin writes, and wherever it
//! puts a secret's placeholder (whole, split by a control character, partly
//! percent-encoded, re-cased, with a look-alike character, cut short or nested),
//! no secret ever arrives at an origin it is not bound to. Two recording servers on
//! loopback see every byte that reaches them.

use super::http::HttpCapability;
use crate::bindings::http::{Method, Request};
use crate::limits::SandboxLimits;
use crate::policy::{NetworkPolicy, Origin};
use crate::redact::Redactor;
use crate::secrets::Secrets;
use proptest::prelude::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

const SECRET: &str = "Tok3n-ç/+ %x_Z";

/// A server that answers 200 to everything and keeps each request's bytes.
struct Recorder {
    port: u16,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let keep = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = BufReader::new(stream);
                let mut raw = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = Vec::new();
                    if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
                    if let Some(value) = text.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    raw.extend_from_slice(&line);
                    if line == b"\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                raw.extend_from_slice(&body);
                keep.lock().unwrap().push(raw);
                let mut stream = reader.into_inner();
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        Recorder { port, received }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

struct World {
    http: HttpCapability,
    placeholder: String,
    bound: Recorder,
    unbound: Recorder,
    /// Finds the secret in any encoding the masking knows.
    finder: Redactor,
}

/// The two tests share the servers: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn world() -> &'static World {
    static WORLD: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    WORLD.get_or_init(|| {
        let (bound, unbound) = (Recorder::start(), Recorder::start());
        let policy =
            NetworkPolicy::from_host_fields([("api", &*bound.origin()), ("other", &*unbound.origin())], true).unwrap();
        let to = Origin::parse_config_value(&bound.origin()).unwrap();
        let secrets = Secrets::new(&[("token".into(), SECRET.into())], &[("token".into(), vec![to])]);
        let placeholder = secrets.placeholder(SECRET).unwrap().to_owned();
        let redactor = Arc::new(Redactor::new([SECRET]));
        let http = HttpCapability::new(policy, &SandboxLimits::default(), "prop".into(), redactor, secrets).unwrap();
        World { http, placeholder, bound, unbound, finder: Redactor::new([SECRET]) }
    })
}

/// How a placeholder is written.
#[derive(Clone, Debug)]
enum Variant {
    Whole,
    Split(char, usize),
    PercentOne(usize),
    Lowercase,
    LookAlike(usize),
    CaseFlip(usize),
    Cut(usize),
    Nested,
}

fn variant() -> impl Strategy<Value = Variant> {
    prop_oneof![
        3 => Just(Variant::Whole),
        2 => (prop::sample::select(vec!['\t', '\n', '\r', '\0', '\u{7f}', '\u{85}', ' ']), 0usize..40)
            .prop_map(|(c, at)| Variant::Split(c, at)),
        1 => (0usize..40).prop_map(Variant::PercentOne),
        1 => Just(Variant::Lowercase),
        1 => (0usize..12).prop_map(Variant::LookAlike),
        1 => (0usize..40).prop_map(Variant::CaseFlip),
        1 => (1usize..40).prop_map(Variant::Cut),
        1 => Just(Variant::Nested),
    ]
}

fn write(placeholder: &str, variant: &Variant) -> String {
    let p = placeholder;
    let at = |i: usize| {
        let mut i = i % p.len();
        while !p.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match variant {
        Variant::Whole => p.to_owned(),
        Variant::Split(c, i) => format!("{}{c}{}", &p[..at(*i)], &p[at(*i)..]),
        Variant::PercentOne(i) => {
            let i = at(*i);
            format!("{}%{:02X}{}", &p[..i], p.as_bytes()[i], &p[i + 1..])
        }
        Variant::Lowercase => p.to_lowercase(),
        // Fullwidth or Cyrillic letters that fold or normalise to ASCII elsewhere.
        Variant::LookAlike(i) => p.replacen('E', if i % 2 == 0 { "Ｅ" } else { "Е" }, 1),
        Variant::CaseFlip(i) => {
            let i = at(*i);
            let c = p.as_bytes()[i] as char;
            let flipped = if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() };
            format!("{}{flipped}{}", &p[..i], &p[i + 1..])
        }
        Variant::Cut(n) => p[..p.len() - (n % (p.len() - 1)).max(1)].to_owned(),
        Variant::Nested => format!("{}{p}{}", &p[..12], &p[12..]),
    }
}

/// Where a placeholder is put.
#[derive(Clone, Copy, Debug)]
enum Place {
    Scheme,
    Userinfo,
    Host,
    Port,
    Path,
    Query,
    Fragment,
    HeaderValue,
    HeaderName,
    /// A `Host` header naming the other origin, with the placeholder in a header.
    HostHeader,
    FormBody,
    JsonBody,
    TextBody,
}

fn place() -> impl Strategy<Value = Place> {
    prop::sample::select(vec![
        Place::Scheme,
        Place::Userinfo,
        Place::Host,
        Place::Port,
        Place::Path,
        Place::Query,
        Place::Fragment,
        Place::HeaderValue,
        Place::HeaderName,
        Place::HostHeader,
        Place::FormBody,
        Place::JsonBody,
        Place::TextBody,
    ])
}

fn request(origin_port: u16, inserts: &[(Place, String)]) -> Request {
    let text = |place: &str| {
        inserts.iter().filter(|(p, _)| format!("{p:?}") == place).map(|(_, t)| t.as_str()).collect::<String>()
    };
    let url = format!(
        "http{}://{}{}127.0.0.1:{origin_port}{}/p/{}?q={}#{}",
        text("Scheme"),
        match text("Userinfo") {
            t if t.is_empty() => String::new(),
            t => format!("{t}@"),
        },
        match text("Host") {
            t if t.is_empty() => String::new(),
            t => format!("{t}."),
        },
        text("Port"),
        text("Path"),
        text("Query"),
        text("Fragment"),
    );
    let mut headers = vec![("x-token".to_owned(), format!("Bearer {}", text("HeaderValue")))];
    if !text("HeaderName").is_empty() {
        headers.push((text("HeaderName"), "v".into()));
    }
    if !text("HostHeader").is_empty() {
        headers.push(("host".into(), "collector.example".into()));
        headers.push(("x-fronted".into(), text("HostHeader")));
    }
    let (content_type, body) = if !text("FormBody").is_empty() {
        ("application/x-www-form-urlencoded", format!("a=1&s={}", text("FormBody")))
    } else if !text("JsonBody").is_empty() {
        ("application/json", format!("{{\"s\":\"{}\"}}", text("JsonBody")))
    } else {
        ("text/plain", format!("t={}", text("TextBody")))
    };
    headers.push(("content-type".into(), content_type.into()));
    Request { method: Method::Post, url, headers, body: Some(body.into_bytes()), timeout_ms: Some(5_000) }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_secret_ever_reaches_an_origin_it_is_not_bound_to(
        to_bound in any::<bool>(),
        inserts in prop::collection::vec((place(), variant()), 1..4),
    ) {
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let w = world();
        let port = if to_bound { w.bound.port } else { w.unbound.port };
        let inserts: Vec<(Place, String)> =
            inserts.iter().map(|(place, variant)| (*place, write(&w.placeholder, variant))).collect();
        let _ = w.http.send(request(port, &inserts));
        let leaked = |bytes: &Vec<u8>| w.finder.redact_bytes(bytes.clone()) != *bytes
            || String::from_utf8_lossy(bytes).contains(SECRET);
        for received in w.unbound.take() {
            prop_assert!(!leaked(&received), "the secret reached the unbound origin: {}", String::from_utf8_lossy(&received));
        }
        w.bound.take();
    }
}

#[test]
fn the_bound_origin_gets_the_secret_where_the_placeholder_stood() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let w = world();
    let inserts = vec![(Place::Query, w.placeholder.clone()), (Place::JsonBody, w.placeholder.clone())];
    w.http.send(request(w.bound.port, &inserts)).expect("a whole placeholder to its bound origin is sent");
    let received = w.bound.take();
    assert_eq!(received.len(), 1);
    let text = String::from_utf8_lossy(&received[0]);
    assert!(text.starts_with("POST /p/?q=Tok3n%2D%C3%A7%2F%2B%20%25x%5FZ HTTP/1.1\r\n"), "{text}");
    assert!(text.ends_with(r#"{"s":"Tok3n-ç/+ %x_Z"}"#), "{text}");
    assert!(!text.contains("__SECRET_"), "{text}");
}
