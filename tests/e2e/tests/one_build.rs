//! The README's two commands share one build: `cargo demo` (the CLI with its demo)
//! and `cargo test --release --workspace` must compile wasmtime, Cranelift and every
//! other dependency identically, in either order. Cargo reuses a compiled crate only
//! when its features, profile and dependencies are the same, so this compares the two
//! builds' unit graphs (`--unit-graph`: what each command would compile, without
//! compiling it) and names every unit that would be compiled twice.
//!
//! `--unit-graph` is an unstable cargo flag; `__CARGO_TEST_CHANNEL_OVERRIDE_DO_NOT_USE_THIS`
//! (cargo's own switch for its test suite) lets the stable toolchain print it.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

fn unit_graph(args: &[&str]) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // A target directory of its own: the outer `cargo test` holds the workspace's.
    let target = std::env::temp_dir().join(format!("one-build-{}", std::process::id()));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(args)
        .args(["-Zunstable-options", "--unit-graph", "--release", "--locked", "--offline"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env("__CARGO_TEST_CHANNEL_OVERRIDE_DO_NOT_USE_THIS", "nightly")
        .output()
        .expect("cargo runs");
    std::fs::remove_dir_all(&target).ok();
    assert!(output.status.success(), "cargo {args:?} --unit-graph: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("a unit graph")
}

/// Each unit by (package, target, mode, platform), with an identity that covers its
/// features, profile and, recursively, its dependencies: what cargo's hash covers.
fn identities(graph: &Value) -> BTreeMap<String, (String, String)> {
    let units = graph["units"].as_array().unwrap();
    fn id(i: usize, units: &[Value], memo: &mut HashMap<usize, String>) -> String {
        if let Some(known) = memo.get(&i) {
            return known.clone();
        }
        let u = &units[i];
        let deps: BTreeSet<String> = u["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| id(d["index"].as_u64().unwrap() as usize, units, memo))
            .collect();
        let own = format!("{} {} {}", u["features"], u["profile"], u["mode"]);
        let identity = format!("{own} [{}]", deps.into_iter().collect::<Vec<_>>().join(","));
        let digest = format!("{:016x}", fxhash(&identity));
        memo.insert(i, digest.clone());
        digest
    }
    let mut memo = HashMap::new();
    (0..units.len())
        .map(|i| {
            let u = &units[i];
            let key = format!(
                "{} {} {} {}",
                u["pkg_id"].as_str().unwrap().rsplit('#').next().unwrap(),
                u["target"]["name"],
                u["mode"],
                u["platform"]
            );
            (
                key,
                (
                    id(i, units, &mut memo),
                    format!("features {} opt-level {}", u["features"], u["profile"]["opt_level"]),
                ),
            )
        })
        .collect()
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn the_demo_and_the_test_suite_compile_every_shared_crate_once() {
    let demo = identities(&unit_graph(&["build", "--bin", "connector-host", "--features", "connector-host-cli/demo"]));
    let tests = identities(&unit_graph(&["test", "--workspace", "--no-run"]));
    assert!(demo.keys().any(|k| k.starts_with("wasmtime@")), "the demo builds wasmtime");
    let twice: Vec<String> = demo
        .iter()
        .filter_map(|(key, (id, own))| {
            let (other, other_own) = tests.get(key)?;
            (id != other).then(|| match own == other_own {
                true => format!("{key}: a dependency differs"),
                false => format!("{key}: demo {own}, tests {other_own}"),
            })
        })
        .collect();
    assert!(
        twice.is_empty(),
        "these would be compiled once for `cargo demo` and again for the tests; turn the features \
         the tests use on in host/cli/Cargo.toml (see its comment):\n{}",
        twice.join("\n")
    );
}
