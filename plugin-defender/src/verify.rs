//! "Save and Verify": a token, then the cheapest call proving each permission.

use crate::api::Api;
use crate::auth;
use crate::fetch;
use crate::lenient::strip_bom;
use crate::model::PageEnvelope;
use crate::net::host_of;
use crate::vulnbridge::connector::types::{Check, PluginError};

pub fn verify(api: &mut Api) -> Result<Vec<Check>, PluginError> {
    let mut checks = Vec::new();
    api.token()?;
    checks.push(Check {
        name: "token".into(),
        detail: format!(
            "issued by {} (v2 endpoint) for tenant {}, scope {}",
            host_of(&auth::token_url(&api.settings)),
            api.settings.tenant_id,
            auth::SCOPE
        ),
    });
    let base = api.settings.api_base.clone();
    let machines = format!("{base}/api/machines?$top=1");
    let body = api.get(&machines, "Machine.Read.All")?;
    checks.push(Check {
        name: "Machine.Read.All".into(),
        detail: format!(
            "{} answered /api/machines ({} device(s) in a 1-device probe)",
            host_of(&base),
            rows(&body)
        ),
    });
    let vulnerabilities = format!("{}&$top=1", fetch::vulnerabilities_url(&base, 1));
    let body = api.get(&vulnerabilities, "Vulnerability.Read.All")?;
    checks.push(Check {
        name: "Vulnerability.Read.All".into(),
        detail: format!(
            "{} answered SoftwareVulnerabilitiesByMachine ({} row(s) in a 1-row probe)",
            host_of(&base),
            rows(&body)
        ),
    });
    Ok(checks)
}

fn rows(body: &[u8]) -> String {
    serde_json::from_slice::<PageEnvelope>(strip_bom(body))
        .map(|e| e.value.to_string())
        .unwrap_or_else(|_| "?".into())
}
