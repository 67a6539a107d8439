//! The simulated tenant behaves like Defender and Azure AD at the HTTP level.

use connector_simulators::defender::{DefenderSim, SimOptions, TenantSpec};
use reqwest::blocking::Client;
use serde_json::Value;

fn sim() -> DefenderSim {
    DefenderSim::start(TenantSpec { seed: 5, devices: 30, rows: 120 }, SimOptions::default()).unwrap()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(':', "%3A").replace('/', "%2F")))
        .collect::<Vec<_>>()
        .join("&")
}

fn post(url: String, body: String) -> (u16, Value) {
    let r =
        Client::new().post(url).header("content-type", "application/x-www-form-urlencoded").body(body).send().unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn token(sim: &DefenderSim) -> String {
    let t = sim.tenant();
    let body = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &t.client_id),
        ("client_secret", &t.client_secret),
        ("scope", "https://api.securitycenter.microsoft.com/.default"),
    ]);
    let (status, json) = post(format!("{}/{}/oauth2/v2.0/token", sim.base_url(), t.tenant_id), body);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["expires_in"], 3599, "v2 sends a number");
    json["access_token"].as_str().unwrap().to_owned()
}

fn get(sim: &DefenderSim, path: &str, token: &str) -> (u16, Value) {
    let r = Client::new().get(format!("{}{path}", sim.base_url())).bearer_auth(token).send().unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

#[test]
fn v1_tokens_send_expiry_as_strings_and_check_the_resource() {
    let sim = sim();
    let t = sim.tenant();
    let url = format!("{}/{}/oauth2/token", sim.base_url(), t.tenant_id);
    let good = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &t.client_id),
        ("client_secret", &t.client_secret),
        ("resource", "https://api.securitycenter.microsoft.com"),
    ]);
    let (status, json) = post(url.clone(), good);
    assert_eq!(status, 200);
    assert_eq!(json["expires_in"], "3599");
    let bad = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &t.client_id),
        ("client_secret", &t.client_secret),
        ("resource", "https://graph.microsoft.com"),
    ]);
    let (status, json) = post(url, bad);
    assert_eq!((status, json["error"].as_str()), (400, Some("invalid_resource")));
    assert_eq!(json["error_codes"][0], 500011);
}

#[test]
fn azure_ad_errors_have_their_real_shapes() {
    let sim = sim();
    let t = sim.tenant();
    let (status, json) = post(
        format!("{}/{}/oauth2/v2.0/token", sim.base_url(), t.tenant_id),
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &t.client_id),
            ("client_secret", "x"),
            ("scope", "https://api.securitycenter.microsoft.com/.default"),
        ]),
    );
    assert_eq!((status, json["error"].as_str()), (401, Some("invalid_client")));
    assert!(json["error_description"].as_str().unwrap().starts_with("AADSTS7000215:"));
    for key in ["timestamp", "trace_id", "correlation_id", "error_uri"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let (status, json) = post(
        format!("{}/{}/oauth2/v2.0/token", sim.base_url(), t.tenant_id),
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &t.client_id),
            ("client_secret", &t.client_secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ]),
    );
    assert_eq!((status, json["error_codes"][0].as_u64()), (400, Some(70011)));
}

#[test]
fn machines_filter_and_page_like_defender() {
    let sim = sim();
    let token = token(&sim);
    let active = sim.tenant().active_machines().count();
    let (status, json) = get(&sim, "/api/machines?$filter=healthStatus%20eq%20%27Active%27&$top=10&$skip=0", &token);
    assert_eq!(status, 200);
    assert_eq!(json["value"].as_array().unwrap().len(), 10);
    assert!(json.get("@odata.nextLink").is_none(), "$top suppresses nextLink");
    let (_, json) = get(&sim, "/api/machines?$filter=healthStatus%20ne%20%27Active%27", &token);
    assert_eq!(json["value"].as_array().unwrap().len(), 30 - active);
    let (status, json) = get(&sim, "/api/machines?$top=10001", &token);
    assert_eq!((status, json["error"]["code"].as_str()), (400, Some("ODataError")));
    let (status, _) = get(&sim, "/api/machines", "not-a-token");
    assert_eq!(status, 401);
}

#[test]
fn vulnerabilities_page_with_next_links_and_top_returns_no_link() {
    let sim = sim();
    let token = token(&sim);
    let mut path = "/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=50".to_owned();
    let mut rows = 0;
    let mut pages = 0;
    loop {
        let (status, json) = get(&sim, &path, &token);
        assert_eq!(status, 200);
        rows += json["value"].as_array().unwrap().len();
        pages += 1;
        match json["@odata.nextLink"].as_str() {
            Some(link) => path = link.strip_prefix(sim.base_url()).unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!((rows, pages), (120, 3));
    let (_, json) = get(&sim, "/api/machines/SoftwareVulnerabilitiesByMachine?$top=7", &token);
    assert_eq!(json["value"].as_array().unwrap().len(), 7);
    assert!(json.get("@odata.nextLink").is_none());
    assert_eq!(sim.calls()["vulnerabilities"], 4);
}

#[test]
fn missing_roles_are_403_with_the_permission_names() {
    let sim = DefenderSim::start(
        TenantSpec { seed: 5, devices: 3, rows: 3 },
        SimOptions { roles: vec![], ..Default::default() },
    )
    .unwrap();
    let token = token(&sim);
    let (status, json) = get(&sim, "/api/machines", &token);
    assert_eq!(status, 403);
    assert!(json["error"]["message"].as_str().unwrap().contains("Machine.Read.All"));
}
