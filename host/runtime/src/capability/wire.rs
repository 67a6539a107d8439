//! A plugin's request in the one form the host checks and sends.
//!
//! The request is parsed once, into what will go on the wire; every check (the
//! network policy, where each secret may go) and the substitution of secrets run on
//! that same form. Anything a parser would silently change is refused instead:
//! control characters in the URL (a URL parser drops tab, CR and LF, which would
//! join a split placeholder after the check), in header names or values; a
//! placeholder that is split, partial, nested or re-cased; a placeholder anywhere
//! in the URL but its path or query; a URL that would change shape once a secret
//! stands in it.

use crate::bindings::http::{Method, Request};
use crate::policy::{NetworkPolicy, Origin};
use crate::secrets::{Encoding, Found, Secrets};
use reqwest::header::{HeaderName, HeaderValue};
use url::{Position, Url};

/// A request ready to send: secrets in place, every check passed.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) method: reqwest::Method,
    /// The URL as it is sent, secrets in.
    pub(crate) url: Url,
    /// The headers as they are sent (without `Accept-Encoding` and `TE`).
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The body as it is sent.
    pub(crate) body: Option<Vec<u8>>,
    /// Header names the host dropped, for its log.
    pub(crate) dropped: Vec<String>,
}

/// Why a request is not sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The request cannot be sent unambiguously.
    Invalid(String),
    /// The policy or a secret's binding refuses its destination.
    Denied(String),
}

/// Headers the host writes itself, refused from a plugin: `Host` names the origin
/// the check saw (a different one would route a request, secrets and all, to
/// another site behind the same address or CDN: domain fronting); the framing and
/// connection headers are the client's to get right (a second `Content-Length` or a
/// `Transfer-Encoding` could smuggle a request past the check).
const HOST_OWNED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// The longest piece of a plugin's URL repeated in a message.
const SHOWN_URL_CHARS: usize = 200;

/// A plugin's URL as messages show it: without control characters, cut to length.
pub(crate) fn shown(url: &str) -> String {
    let head: String = url.chars().take(SHOWN_URL_CHARS).collect();
    let mut text = crate::redact::one_line(&head);
    if url.chars().count() > SHOWN_URL_CHARS {
        text.push('…');
    }
    text
}

fn method_of(method: &Method) -> reqwest::Method {
    match method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
        Method::Head => reqwest::Method::HEAD,
    }
}

/// Checks a plugin's request and fills in its secrets.
pub(crate) fn prepare(request: Request, policy: &NetworkPolicy, secrets: &Secrets) -> Result<Outgoing, Refusal> {
    let invalid = Refusal::Invalid;
    if request.url.chars().any(char::is_control) {
        return Err(invalid(format!("the URL `{}` holds a control character; encode it", shown(&request.url))));
    }
    if request.url.trim() != request.url {
        return Err(invalid(format!("the URL `{}` starts or ends with white space", shown(&request.url))));
    }
    let url = Url::parse(&request.url).map_err(|e| invalid(format!("`{}` is not a URL: {e}", shown(&request.url))))?;
    policy.check(&url).map_err(Refusal::Denied)?;
    let origin = Origin::of(&url).map_err(|e| invalid(e.to_string()))?;

    // The placeholders of the URL as it will be sent, each within its path or query.
    let in_url = secrets.scan(url.as_str().as_bytes()).map_err(invalid)?;
    let carrying = url[..Position::BeforePath].len()..url[..Position::AfterQuery].len();
    if let Some(misplaced) = in_url.iter().find(|f| !carrying.contains(&f.at)) {
        return Err(invalid(format!(
            "the secret `{}` stands outside the URL's path and query; a secret may stand only there",
            secrets.key_of(misplaced)
        )));
    }

    let mut headers = Vec::with_capacity(request.headers.len());
    let mut dropped = Vec::new();
    let mut content_type = None;
    let mut found: Vec<Found> = in_url.clone();
    let mut header_found = Vec::with_capacity(request.headers.len());
    for (name, value) in &request.headers {
        if name.chars().chain(value.chars()).any(char::is_control) {
            return Err(invalid(format!("the header `{}` holds a control character", shown(name))));
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name `{}`", shown(name))))?;
        if !secrets.scan(name.as_bytes()).map_err(invalid)?.is_empty() {
            return Err(invalid("a secret cannot stand in a header's name".into()));
        }
        if HOST_OWNED_HEADERS.contains(&header.as_str()) {
            return Err(invalid(format!("the host sets the `{header}` header itself; leave it out")));
        }
        // The host reads bodies as they come: a compressed or transfer-encoded echo
        // would carry a secret past the masking. So responses come unencoded.
        if header == reqwest::header::ACCEPT_ENCODING || header == reqwest::header::TE {
            dropped.push(name.clone());
            continue;
        }
        let in_value = secrets.scan(value.as_bytes()).map_err(invalid)?;
        found.extend(&in_value);
        if header == reqwest::header::CONTENT_TYPE {
            content_type = Some(value.clone());
        }
        header_found.push((header, value, in_value));
    }
    let in_body = match &request.body {
        Some(body) => secrets.scan(body).map_err(invalid)?,
        None => Vec::new(),
    };
    found.extend(&in_body);
    if let Some(why) = secrets.refusal(&origin, &found) {
        return Err(Refusal::Denied(why));
    }

    // Every check passed on this form: put the secrets in, where the checks saw them.
    let url = if in_url.is_empty() {
        url
    } else {
        let text = secrets.substitute(url.as_str().as_bytes(), &in_url, Encoding::Url);
        let text = String::from_utf8(text).expect("a URL with percent-encoded secrets is ASCII");
        match Url::parse(&text) {
            Ok(sent) if sent.as_str() == text && Origin::of(&sent).is_ok_and(|o| o == origin) => sent,
            _ => {
                return Err(invalid(
                    "the URL would change shape once its secret stands in it (a secret as a whole path segment `.` or `..`); put the secret in the query"
                        .into(),
                ))
            }
        }
    };
    for (header, value, in_value) in header_found {
        let value = secrets.substitute(value.as_bytes(), &in_value, Encoding::Raw);
        let value = HeaderValue::from_bytes(&value)
            .ok()
            .filter(|v| !v.as_bytes().iter().any(|b| b.is_ascii_control()))
            .ok_or_else(|| {
                let keys: Vec<&str> = in_value.iter().map(|f| secrets.key_of(f)).collect();
                invalid(format!(
                    "the value of header `{header}` is not a valid header once its secret ({}) stands in it",
                    keys.join(", ")
                ))
            })?;
        headers.push((header, value));
    }
    let body = request.body.map(|body| match in_body.is_empty() {
        true => body,
        false => secrets.substitute(&body, &in_body, Encoding::of_body(content_type.as_deref())),
    });
    Ok(Outgoing { method: method_of(&request.method), url, headers, body, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "tok-3n_S3cr/t";

    fn session() -> (NetworkPolicy, Secrets, String) {
        let policy = NetworkPolicy::from_host_fields(
            [("api", "https://api.example.com"), ("collector", "https://collector.example.com")],
            false,
        )
        .unwrap();
        let api = Origin::parse_config_value("https://api.example.com").unwrap();
        let secrets = Secrets::new(&[("token".into(), TOKEN.into())], &[("token".into(), vec![api])]);
        let placeholder = secrets.placeholder(TOKEN).unwrap().to_owned();
        (policy, secrets, placeholder)
    }

    fn get(url: &str) -> Request {
        Request { method: Method::Get, url: url.into(), headers: vec![], body: None, timeout_ms: None }
    }

    #[test]
    fn a_placeholder_split_by_a_control_character_is_refused_before_any_check() {
        let (policy, secrets, p) = session();
        let (head, tail) = p.split_at(5);
        for sep in ["\t", "\n", "\r"] {
            let url = format!("https://collector.example.com/collect?s={head}{sep}{tail}");
            let refused = prepare(get(&url), &policy, &secrets).unwrap_err();
            assert!(matches!(&refused, Refusal::Invalid(why) if why.contains("control character")), "{refused:?}");
        }
        let header =
            Request { headers: vec![("x-k".into(), format!("{head}\t{tail}"))], ..get("https://api.example.com/") };
        assert!(matches!(prepare(header, &policy, &secrets), Err(Refusal::Invalid(_))));
    }

    #[test]
    fn altered_placeholders_are_refused_whole_ones_are_filled_in() {
        let (policy, secrets, p) = session();
        let partial = &p[..p.len() - 3];
        let nested = format!("{}{p}__", &p[..12]);
        for text in [partial.to_owned(), p.to_lowercase(), nested] {
            let refused = prepare(get(&format!("https://api.example.com/x?s={text}")), &policy, &secrets);
            assert!(matches!(&refused, Err(Refusal::Invalid(why)) if why.contains("altered")), "{text}: {refused:?}");
        }
        let sent = prepare(get(&format!("https://api.example.com/x/{p}?s={p}")), &policy, &secrets).unwrap();
        assert_eq!(sent.url.as_str(), "https://api.example.com/x/tok%2D3n%5FS3cr%2Ft?s=tok%2D3n%5FS3cr%2Ft");
    }

    #[test]
    fn a_secret_stands_only_in_the_path_or_query_of_a_bound_origin() {
        let (policy, secrets, p) = session();
        for url in [
            format!("https://{p}@api.example.com/"),
            format!("https://api.example.com/#{p}"),
            format!("https://{p}.api.example.com/"),
        ] {
            assert!(prepare(get(&url), &policy, &secrets).is_err(), "{url}");
        }
        let denied = prepare(get(&format!("https://collector.example.com/x?s={p}")), &policy, &secrets).unwrap_err();
        assert!(matches!(&denied, Refusal::Denied(why) if why.contains("`token` may not be sent")), "{denied:?}");
        let api = Origin::parse_config_value("https://api.example.com").unwrap();
        let dots = Secrets::new(&[("token".into(), "..".into())], &[("token".into(), vec![api])]);
        let dp = dots.placeholder("..").unwrap().to_owned();
        let shape = prepare(get(&format!("https://api.example.com/a/{dp}/b")), &policy, &dots).unwrap_err();
        assert!(matches!(&shape, Refusal::Invalid(why) if why.contains("change shape")), "{shape:?}");
    }

    #[test]
    fn headers_the_host_owns_are_refused_from_a_plugin() {
        // `Host: collector...` on a request to the API's address would be domain
        // fronting: the check sees one origin, a CDN routes to another.
        let (policy, secrets, p) = session();
        for (name, value) in
            [("Host", "collector.example.com"), ("content-length", "0"), ("Transfer-Encoding", "chunked")]
        {
            let request = Request {
                headers: vec![(name.into(), value.into()), ("authorization".into(), format!("Bearer {p}"))],
                ..get("https://api.example.com/x")
            };
            let refused = prepare(request, &policy, &secrets).unwrap_err();
            assert!(matches!(&refused, Refusal::Invalid(why) if why.contains("sets the")), "{name}: {refused:?}");
        }
    }

    #[test]
    fn messages_show_a_bounded_url_on_one_line() {
        let long = format!("https://x.example/\n{}", "a".repeat(100_000));
        let text = shown(&long);
        assert!(text.chars().count() <= SHOWN_URL_CHARS + 1 && !text.contains('\n'), "{}", text.len());
    }
}
