//! The contract's version policy: the host runs the contract versions it states and
//! refuses others before instantiating, naming both versions and what to do.
//!
//! `test_plugin_contract_v0_1` is a working plugin built against an old contract
//! (`wit/previous/v0.1.0`) no binding of this host runs, so it must be refused with
//! a rebuild hint. (A 0.2 plugin runs through its adapter: see `sandbox.rs`.)
//! `test_plugin_wrong_version` claims a future 9.0.0.

use connector_e2e::artifacts::{self, run_cli};
use connector_host::engine::PluginHost;
use connector_host::types::{supported_contracts, CONTRACT_VERSION};

fn load_error(plugin: &str) -> String {
    let host = PluginHost::new().unwrap().with_cache_dir(None);
    format!("{:#}", host.load(&artifacts::plugin(plugin)).err().expect("the plugin must be refused"))
}

#[test]
fn a_plugin_of_the_previous_contract_is_refused_with_a_rebuild_hint() {
    let error = load_error("test_plugin_contract_v0_1");
    assert!(
        error.contains(&format!("implements connector contract 0.1.0, but this host runs {}", supported_contracts())),
        "{error}"
    );
    assert!(error.contains("rebuild the plugin against the connector SDK"), "{error}");
}

#[test]
fn a_plugin_of_a_future_contract_is_refused_with_an_upgrade_hint() {
    let error = load_error("test_plugin_wrong_version");
    assert!(
        error.contains("implements connector contract 9.0.0") && error.contains("upgrade connector-host"),
        "{error}"
    );
}

#[test]
fn both_sdk_plugins_implement_the_current_contract_and_info_says_so() {
    for plugin in ["plugin_defender", "plugin_dependabot"] {
        let path = artifacts::plugin(plugin);
        let out = run_cli(&["info", "--plugin", path.to_str().unwrap(), "--json"], &[]);
        assert!(out.success(), "{}", out.stderr());
        let info: serde_json::Value = serde_json::from_str(&out.stdout()).unwrap();
        assert_eq!(info["contract"], CONTRACT_VERSION, "{plugin}");
    }
    let refused = run_cli(&["info", "--plugin", artifacts::plugin("test_plugin_contract_v0_1").to_str().unwrap()], &[]);
    assert!(!refused.success());
    assert!(refused.error_lines()[0].contains("contract 0.1.0"), "{}", refused.stderr());
}
