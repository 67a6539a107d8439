//! "Save and Verify": two small calls that prove what a run needs.

use crate::client::{count_entries, get, API_VERSION};
use crate::fetch::first_page_url;
use crate::settings::Settings;
use connector_sdk::types::{Check, PluginError};

/// Two small calls: the token works, the organization exists, its repositories
/// can be listed (every one is sent, so that CVM closes fixed alerts), and its
/// alerts can be read.
pub fn verify(settings: &Settings) -> Result<Vec<Check>, PluginError> {
    let listed = get(settings, &crate::fetch::repositories_url(settings, 1))?;
    let repositories = count_entries(&listed.body);
    let response = get(settings, &first_page_url(settings, 1))?;
    let sample = count_entries(&response.body);
    Ok(vec![
        Check {
            name: "GitHub API".into(),
            detail: format!("{} answers with API version {API_VERSION}", settings.api_base),
        },
        Check {
            name: "Repositories".into(),
            detail: format!(
                "the token lists `{}`'s repositories ({})",
                settings.organization,
                if repositories == 0 { "none visible" } else { "at least one" }
            ),
        },
        Check {
            name: "Dependabot alerts".into(),
            detail: format!(
                "the token reads `{}`'s alerts ({})",
                settings.organization,
                if sample == 0 { "none open" } else { "at least one open" }
            ),
        },
    ])
}
