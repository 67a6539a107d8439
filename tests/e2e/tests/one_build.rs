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
use std::collections::{BTreeSet, HashMap, HashSet};
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

/// One unit cargo would compile: its name (package, target, mode, platform), an
/// identity that covers its features, profile and, recursively, its dependencies (what
/// cargo's hash covers), and its own features and optimization level, to explain a
/// difference. A crate can be compiled twice in one build (for a proc macro or build
/// script and for the program, with features resolved apart), so names repeat.
struct Unit {
    name: String,
    identity: String,
    own: String,
    /// Indexes of its dependencies in the same list.
    dependencies: Vec<usize>,
}

fn units(graph: &Value) -> Vec<Unit> {
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
            let name = format!(
                "{} {} {} {}",
                u["pkg_id"].as_str().unwrap().rsplit('#').next().unwrap(),
                u["target"]["name"],
                u["mode"],
                u["platform"]
            );
            Unit {
                name,
                identity: id(i, units, &mut memo),
                own: format!("features {} opt-level {}", u["features"], u["profile"]["opt_level"]),
                dependencies: u["dependencies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["index"].as_u64().unwrap() as usize)
                    .collect(),
            }
        })
        .collect()
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The units of `build` that the test suite would not reuse, each with the reason:
/// its own features or optimization level, or the dependencies that differ. The CLI
/// itself is left out: the demo builds it without the service and a production build
/// without the demo, while the tests build it with both; it is a crate of a few
/// hundred lines, and everything below it must not differ.
fn compiled_again(build: &[Unit], tests: &[Unit]) -> BTreeSet<String> {
    let compiled_for_tests: HashSet<&str> = tests.iter().map(|u| u.identity.as_str()).collect();
    build
        .iter()
        .filter(|u| !u.name.starts_with("connector-host-cli@"))
        .filter(|u| !compiled_for_tests.contains(u.identity.as_str()))
        .filter_map(|u| {
            let same_name: Vec<&Unit> = tests.iter().filter(|t| t.name == u.name).collect();
            if same_name.is_empty() {
                return None; // the tests do not build it at all
            }
            let Some(same_features) = same_name.iter().find(|t| t.own == u.own) else {
                let others: Vec<&str> = same_name.iter().map(|t| t.own.as_str()).collect();
                return Some(format!("{}: here {}, tests {}", u.name, u.own, others.join(" or ")));
            };
            // Name the dependencies that differ: the crate to fix may be one whose
            // features the tests also build it with elsewhere (for a build script).
            let differing: Vec<String> = u
                .dependencies
                .iter()
                .map(|&d| &build[d])
                .filter(|d| {
                    same_features
                        .dependencies
                        .iter()
                        .map(|&t| &tests[t])
                        .any(|t| t.name == d.name && t.identity != d.identity)
                })
                .map(|d| format!("{} ({})", d.name, d.own))
                .collect();
            Some(format!("{}: a dependency differs: {}", u.name, differing.join(", ")))
        })
        .collect()
}

fn assert_shares_the_tests_build(what: &str, build: &[Unit]) {
    assert!(build.iter().any(|u| u.name.starts_with("wasmtime@")), "{what} builds wasmtime");
    let tests = units(&unit_graph(&["test", "--workspace", "--no-run"]));
    let again = compiled_again(build, &tests);
    assert!(
        again.is_empty(),
        "these would be compiled once for {what} and again for the tests; turn the features the \
         tests use on in host/cli/Cargo.toml (see its comment):\n{}",
        again.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_demo_and_the_test_suite_compile_every_shared_crate_once() {
    // As `cargo demo` builds it (.cargo/config.toml): without the platform service.
    let demo = units(&unit_graph(&[
        "build",
        "--bin",
        "connector-host",
        "--no-default-features",
        "--features",
        "connector-host-cli/demo",
    ]));
    assert_shares_the_tests_build("`cargo demo`", &demo);
}

#[test]
fn a_production_build_reuses_the_test_suites_crates() {
    // `cargo build --release`: the workspace's default member, the CLI with the service.
    let production = units(&unit_graph(&["build"]));
    assert!(production.iter().any(|u| u.name.starts_with("sqlx-core@")), "a production build has the service");
    assert_shares_the_tests_build("a production build", &production);
}
