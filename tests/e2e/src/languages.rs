//! Plugins in other languages, built from source as their guides say
//! (`wit/guides/`): the tools come from the package registries and `.ci/run`
//! installs them at pinned versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository's root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

/// Each example built once per test process (tests run at once and would otherwise
/// build into, and clear, the same folder).
fn built_once(language: &str, example: &str, build: impl FnOnce() -> PathBuf) -> PathBuf {
    static BUILT: Mutex<BTreeMap<String, PathBuf>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    built.entry(format!("{language}/{example}")).or_insert_with(build).clone()
}

/// Builds the Python plugin in `tests/plugins/<example>/app.py` into a component
/// with componentize-py, as `wit/guides/python.md` says (once per process); its path.
pub fn componentize_python(example: &str) -> PathBuf {
    built_once("python", example, || build_python(example))
}

fn build_python(example: &str) -> PathBuf {
    let root = repository();
    let source = root.join("tests/plugins").join(example);
    let out = crate::kdi::temp_dir(&format!("python-{example}")).join(format!("{example}.wasm"));
    let mut command = Command::new("componentize-py");
    command.args(["-d", root.join("wit").to_str().unwrap(), "-w", "connector-plugin", "componentize", "app"]);
    command.args(["-p", source.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    run_tool(&mut command, "componentize-py", "pip install componentize-py==0.25.1 (.ci/run does)", &source);
    assert!(out.is_file(), "componentize-py wrote no {}", out.display());
    out
}

/// Runs a tool of a language's build on `input`; what it printed. A tool that cannot
/// be started says how to install it; one that fails shows its output.
fn run_tool(command: &mut Command, tool: &str, install: &str, input: &Path) -> std::process::Output {
    let output = command.output().unwrap_or_else(|e| panic!("{tool} could not be started ({e}): {install}"));
    assert!(
        output.status.success(),
        "{tool} failed on {}:\n{}{}",
        input.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The fenced code block of `guide` that follows the line `<!-- file: PATH -->`.
pub fn guide_block(guide: &str, path: &str) -> String {
    let marker = format!("<!-- file: {path} -->");
    let after = guide.split_once(&marker).unwrap_or_else(|| panic!("the guide shows no `{marker}`")).1;
    let fence = after.trim_start().lines().next().unwrap_or_default().to_owned();
    assert!(fence.starts_with("```"), "`{marker}` is followed by a fenced block, not `{fence}`");
    let body = after.trim_start().split_once('\n').unwrap().1;
    body.split_once("\n```\n").unwrap_or_else(|| panic!("the block after `{marker}` never closes")).0.to_owned() + "\n"
}

/// Builds the JavaScript plugin in `tests/plugins/<example>/plugin.js` into a
/// component with componentize-js, as `wit/guides/javascript.md` says (its
/// `node_modules` installed by `npm ci` there; once per process); its path.
pub fn componentize_javascript(example: &str) -> PathBuf {
    built_once("javascript", example, || build_javascript(example))
}

fn build_javascript(example: &str) -> PathBuf {
    let root = repository();
    let source = root.join("tests/plugins").join(example);
    let tool = source.join("node_modules/.bin/componentize-js");
    assert!(tool.is_file(), "{} is missing: run `npm ci` in {} (.ci/run does)", tool.display(), source.display());
    let out = crate::kdi::temp_dir(&format!("javascript-{example}")).join(format!("{example}.wasm"));
    let mut command = Command::new(&tool);
    command.current_dir(&source);
    command.args(["plugin.js", "--wit", root.join("wit").to_str().unwrap(), "--world-name", "connector-plugin"]);
    command.args(["--disable", "stdio", "random", "clocks", "http", "fetch-event", "-o", out.to_str().unwrap()]);
    run_tool(&mut command, "componentize-js", "run `npm ci` in the example's folder (.ci/run does)", &source);
    assert!(out.is_file(), "componentize-js wrote no {}", out.display());
    out
}

/// The world a built component imports and exports, as `jco wit` prints it (jco
/// from the JavaScript example's `node_modules`, pinned in its `package.json`).
pub fn component_world(component: &Path) -> String {
    let example = repository().join("tests/plugins/javascript-dependabot");
    let tool = example.join("node_modules/.bin/jco");
    assert!(tool.is_file(), "{} is missing: run `npm ci` in {} (.ci/run does)", tool.display(), example.display());
    let mut command = Command::new(&tool);
    command.arg("wit").arg(component);
    let printed = run_tool(&mut command, "jco wit", "run `npm ci` in the example's folder (.ci/run does)", component);
    String::from_utf8(printed.stdout).expect("jco prints UTF-8")
}
