//! The binary itself: its commands and its errors for bad arguments. (This file also
//! makes `cargo test` build the binary that the end-to-end tests in tests/e2e run.)

use std::process::Command;

fn host() -> Command {
    Command::new(env!("CARGO_BIN_EXE_connector-host"))
}

#[test]
fn help_lists_the_commands() {
    let out = host().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for command in ["info", "verify", "run", "demo"] {
        assert!(text.contains(command), "--help lacks {command}: {text}");
    }
}

#[test]
fn a_missing_plugin_file_is_one_clear_error() {
    let out = host().args(["info", "--plugin", "/nonexistent/plugin.wasm"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: cannot read plugin /nonexistent/plugin.wasm"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let dir = std::env::temp_dir().join(format!("cli-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("plugin.wasm");
    std::fs::write(&text, "not wasm").unwrap();
    let core = dir.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = host().args(["info", "--plugin"]).arg(&text).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a WebAssembly file"));
    let out = host().args(["info", "--plugin"]).arg(&core).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("core WebAssembly module, not a component"));
}
