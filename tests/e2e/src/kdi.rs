//! Reading the KDI files a run wrote.

use serde_json::Value;
use std::path::Path;

/// Every `kdi-*.json` file in `dir`, parsed, in name order.
pub fn read_dir(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("kdi-") && p.extension().is_some_and(|x| x == "json")
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), serde_json::from_str(&text).unwrap())
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("connector-e2e-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks a KDI file against `host/schema/kdi-v2.schema.json`, and the one rule the
/// schema cannot express: every `vuln_def_name` names a `vuln_defs[]` entry of the file.
pub fn assert_valid(name: &str, file: &Value) {
    use std::sync::OnceLock;
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(connector_cvm_simulator::KDI_SCHEMA).unwrap();
        jsonschema::options().should_validate_formats(true).build(&schema).unwrap()
    });
    let errors: Vec<String> =
        validator.iter_errors(file).take(5).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{name} does not match the KDI schema: {errors:?}");
    let names: std::collections::BTreeSet<&str> =
        file["vuln_defs"].as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    for asset in file["assets"].as_array().unwrap() {
        for v in asset["vulns"].as_array().unwrap() {
            let def = v["vuln_def_name"].as_str().unwrap();
            assert!(names.contains(def), "{name}: vuln_def_name {def} has no vuln_def in the file");
        }
    }
}
