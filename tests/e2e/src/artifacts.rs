//! The built plugin components and the `connector-host` binary.
//!
//! Plugins are built for wasm32-wasip2 before the tests run (see the README's test
//! command); the binary is built by `cargo test` because the host crate has
//! integration tests.

use std::path::PathBuf;
use std::process::{Command, Output};

/// The workspace's target directory, found from the running test binary
/// (`target/<profile>/deps/<test>`), so `CARGO_TARGET_DIR` is honoured.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors().nth(3).expect("target/<profile>/deps/<test>").to_path_buf()
}

fn profile_dir() -> PathBuf {
    std::env::current_exe().expect("test binary path").ancestors().nth(2).expect("target/<profile>").to_path_buf()
}

/// A plugin component, e.g. `plugin_defender`.
pub fn plugin(name: &str) -> PathBuf {
    let path = target_dir().join("wasm32-wasip2/release").join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} is missing; build the plugins first: cargo build-plugins", path.display());
    path
}

/// The `connector-host` binary of the same build profile as the tests.
pub fn host_binary() -> PathBuf {
    // A benchmark may compare another build (`CONNECTOR_HOST_BINARY`) with this one.
    let path = std::env::var_os("CONNECTOR_HOST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("connector-host"));
    // `cargo demo` leaves one built without the service here; `cargo test --workspace`
    // (the README's command) builds the whole CLI for the host's tests and puts it back.
    assert!(path.is_file(), "{} is missing; run the tests with `cargo test --workspace`", path.display());
    path
}

/// Runs `connector-host` with arguments and extra environment variables. Its
/// default state directory is a fresh one for each call (every run is a first run,
/// never incremental), unless the test names one.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut command = Command::new(host_binary());
    command.args(args).env_remove("RUST_LOG");
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let state = std::env::temp_dir().join(format!("e2e-state-{}-{call}", std::process::id()));
    command.env("XDG_STATE_HOME", state);
    for (k, v) in env {
        command.env(k, v);
    }
    CliOutput(command.output().expect("run connector-host"))
}

/// What a CLI run printed.
pub struct CliOutput(pub Output);

impl CliOutput {
    pub fn success(&self) -> bool {
        self.0.status.success()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// The error lines (`error: ...`) the CLI printed.
    pub fn error_lines(&self) -> Vec<String> {
        self.stderr().lines().filter(|l| l.starts_with("error:")).map(str::to_owned).collect()
    }
}
