//! The plugin author's guide (`wit/README.md`) is followed as a new author would:
//! its `Cargo.toml` and `src/lib.rs` are copied into a fresh directory outside the
//! workspace, the plugin's own unit test runs, the component is built for
//! wasm32-wasip2, and `connector-host` runs it against a loopback API. If the guide
//! or the SDK drift apart, this fails.

use connector_e2e::artifacts::{self, run_cli};
use connector_e2e::kdi;
use connector_simulators::pages::PagesServer;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// The body of the first fenced block of `language` in `text` that contains `marker`.
fn code_block(text: &str, language: &str, marker: &str) -> String {
    let fence = format!("```{language}\n");
    text.split(&fence)
        .skip(1)
        .map(|rest| rest.split("\n```").next().unwrap())
        .find(|block| block.contains(marker))
        .unwrap_or_else(|| panic!("the guide has no ```{language} block with `{marker}`"))
        .to_owned()
}

/// Runs cargo in the new plugin's directory, offline first (the workspace's build
/// has fetched every crate the guide uses), then online.
fn cargo(dir: &Path, target_dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let run = |offline: bool| {
        let mut command = Command::new(&cargo);
        command.args(args).current_dir(dir).env("CARGO_TARGET_DIR", target_dir);
        if offline {
            command.arg("--offline");
        }
        command.output().expect("run cargo")
    };
    let first = run(true);
    if first.status.success() {
        return;
    }
    let second = run(false);
    assert!(
        second.status.success(),
        "cargo {args:?} failed in {}:\n{}\n(offline attempt: {})",
        dir.display(),
        String::from_utf8_lossy(&second.stderr),
        String::from_utf8_lossy(&first.stderr)
    );
}

#[test]
fn a_new_plugin_built_from_the_guide_alone_runs_on_the_host() {
    let guide = std::fs::read_to_string(workspace().join("wit/README.md")).unwrap();
    let manifest = code_block(&guide, "toml", "[package]")
        .replace("/path/to/this/repository/wit", workspace().join("wit").to_str().unwrap());
    let source = code_block(&guide, "rust", "export_connector!");

    // A fresh directory outside the workspace, as `cargo new` would leave it.
    let dir = std::env::temp_dir().join(format!("acme-plugin-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    // Kept between runs (under the workspace's target directory) so reruns are quick.
    let target_dir = artifacts::target_dir().join("guide-plugin");

    cargo(&dir, &target_dir, &["test", "--release", "--quiet"]);
    cargo(&dir, &target_dir, &["build", "--release", "--target", "wasm32-wasip2", "--quiet"]);
    let component = target_dir.join("wasm32-wasip2/release/acme_plugin.wasm");
    assert!(component.is_file(), "{} was not built", component.display());

    let info = run_cli(&["info", "--plugin", component.to_str().unwrap()], &[]);
    assert!(info.success(), "{}", info.stderr());
    assert!(info.stdout().starts_with("Acme Scanner 0.1.0 (acme-scanner)"), "{}", info.stdout());

    let api = PagesServer::start(
        "acme-token",
        &[
            ("/api/findings", r#"{"findings": [{"host": "web-1", "cve": "CVE-2024-1", "score": 7.5}, {"host": "web-2", "cve": "CVE-2024-2", "score": 4.0}], "next": "{base}/api/findings?page=2"}"#),
            ("/api/findings?page=2", r#"{"findings": [{"host": "web-1", "cve": "CVE-2024-3", "score": 9.8}], "next": null}"#),
        ],
    )
    .unwrap();
    let config = dir.join("acme.toml");
    std::fs::write(
        &config,
        format!("[connector]\nhost = \"{}\"\ntoken = {{ env = \"ACME_TOKEN\" }}\n", api.base_url()),
    )
    .unwrap();
    let out = dir.join("out");
    let (component, config_path, out_path) =
        (component.to_str().unwrap(), config.to_str().unwrap(), out.to_str().unwrap());
    let verify = run_cli(
        &["verify", "--plugin", component, "--config", config_path, "--allow-insecure-loopback"],
        &[("ACME_TOKEN", "acme-token")],
    );
    assert!(verify.success() && verify.stdout().contains("Acme accepts the token"), "{}", verify.stderr());
    let run = run_cli(
        &["run", "--plugin", component, "--config", config_path, "--out", out_path, "--allow-insecure-loopback"],
        &[("ACME_TOKEN", "acme-token")],
    );
    assert!(run.success(), "{}", run.stderr());

    let files = kdi::read_dir(&out);
    let mut found = Vec::new();
    for (name, file) in &files {
        kdi::assert_valid(name, file);
        for asset in file["assets"].as_array().unwrap() {
            for v in asset["vulns"].as_array().unwrap() {
                found.push((
                    asset["hostname"].as_str().unwrap().to_owned(),
                    v["scanner_identifier"].as_str().unwrap().to_owned(),
                    v["scanner_score"].as_u64().unwrap(),
                ));
            }
        }
    }
    let expected = [("web-1", "CVE-2024-1", 8), ("web-1", "CVE-2024-3", 10), ("web-2", "CVE-2024-2", 4)];
    assert_eq!(found, expected.map(|(h, c, s)| (h.to_owned(), c.to_owned(), s)));
    assert!(files.iter().all(|(_, f)| f["assets"][0]["vulns"][0]["scanner_type"] == "Acme"));
}
