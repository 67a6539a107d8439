//! "Save and Verify": a token, then the cheapest call proving each permission. It
//! does not wait on throttling or retry unreachable hosts: an administrator hears at
//! once what is wrong. When Azure AD does not know the token audience, it tries the
//! cloud's other known scopes and names the one to pin.

use crate::auth;
use crate::client::Client;
use crate::fetch;
use crate::lenient::strip_bom;
use crate::model::PageEnvelope;
use crate::net::host_of;
use crate::pacing;
use crate::settings::TokenEndpoint;
use connector_sdk::types::{Check, PluginError};

pub fn verify(api: &mut Client) -> Result<Vec<Check>, PluginError> {
    api.patient = false;
    let mut checks = Vec::new();
    // A token for the configured scope; when Azure AD does not know its audience
    // (government clouds differ between tenants), find the scope that works.
    let scope = api.settings.scope.clone();
    match auth::ask(api, &scope)? {
        Ok(token) => api.set_token(token),
        Err(refused) if refused.unknown_audience() => return Err(auth::find_accepted_scope(api, &refused)),
        Err(refused) => return Err(auth::classify_failure(&api.settings, refused.status, &refused.body)),
    }
    let s = &api.settings;
    checks.push(Check {
        name: "token".into(),
        detail: format!(
            "issued by {} ({} endpoint) for tenant {}; {} cloud ({}), {} {}",
            host_of(&auth::token_url(s)),
            match s.token_endpoint {
                TokenEndpoint::V2 => "v2",
                TokenEndpoint::V1 => "v1",
            },
            s.tenant_id,
            s.cloud,
            s.cloud_source,
            match s.token_endpoint {
                TokenEndpoint::V2 => "scope",
                TokenEndpoint::V1 => "resource",
            },
            match s.token_endpoint {
                TokenEndpoint::V2 => s.scope.as_str(),
                TokenEndpoint::V1 => s.resource(),
            }
        ),
    });
    let base = s.api_base.clone();
    let timeout = s.request_timeout;
    let machines = format!("{base}/api/machines?$top=1");
    let body = api.get(&machines, pacing::MACHINES, "Machine.Read.All", timeout)?;
    checks.push(Check {
        name: "Machine.Read.All".into(),
        detail: format!("{} answered /api/machines ({} device(s) in a 1-device probe)", host_of(&base), rows(&body)),
    });
    let vulnerabilities = format!("{}&$top=1", fetch::vulnerabilities_url(&base, 1));
    let body = api.get(&vulnerabilities, pacing::VULNERABILITIES, "Vulnerability.Read.All", timeout)?;
    checks.push(Check {
        name: "Vulnerability.Read.All".into(),
        detail: format!(
            "{} answered SoftwareVulnerabilitiesByMachine ({} row(s) in a 1-row probe)",
            host_of(&base),
            rows(&body)
        ),
    });
    // Incremental runs read the delta export: the same permission, another endpoint.
    let hour_ago = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()) - chrono::Duration::hours(1);
    let changes = format!("{}&$top=1", crate::delta::changes_url(&base, hour_ago, 1));
    let body = api.get(&changes, pacing::VULNERABILITIES, "Vulnerability.Read.All", timeout)?;
    checks.push(Check {
        name: "delta export".into(),
        detail: format!(
            "{} answered SoftwareVulnerabilityChangesByMachine ({} change(s) in the last hour, 1-row probe)",
            host_of(&base),
            rows(&body)
        ),
    });
    // The catalogue only enriches definitions: a run goes on without it, so its
    // check reports what is missing instead of failing.
    if api.settings.catalogue {
        let url = format!("{base}{}?$top=1", crate::catalogue::ENDPOINT);
        let detail = match api.get(&url, pacing::VULNERABILITIES, "Vulnerability.Read.All", timeout) {
            Ok(body) => format!(
                "{} answered /api/vulnerabilities ({} record(s) in a 1-record probe): definitions get Defender's name, description, CVSS, EPSS and exploit facts",
                host_of(&base),
                rows(&body)
            ),
            Err(e) => format!(
                "not readable, so definitions will have no description (runs go on without it): {}",
                crate::catalogue::text_of(&e)
            ),
        };
        checks.push(Check { name: "vulnerability catalogue".into(), detail });
    }
    Ok(checks)
}

fn rows(body: &[u8]) -> String {
    serde_json::from_slice::<PageEnvelope>(strip_bom(body)).map(|e| e.value.to_string()).unwrap_or_else(|_| "?".into())
}
