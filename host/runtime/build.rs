//! The contract version of every WIT folder the host may bind (`wit/` and each
//! `wit/previous/*`), read from its `package vulnbridge:connector@X.Y.Z;` line: a
//! binding's version comes from the WIT it was generated from, never from a literal
//! kept beside it. Each becomes a constant named for its line (`V0_3` for 0.3.x),
//! and `CURRENT` is the version of `wit/`.

use std::path::Path;

fn version(dir: &Path) -> String {
    let world = dir.join("world.wit");
    println!("cargo:rerun-if-changed={}", world.display());
    let text = std::fs::read_to_string(&world).unwrap_or_else(|e| panic!("cannot read {}: {e}", world.display()));
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package vulnbridge:connector@"))
        .unwrap_or_else(|| panic!("{} has no `package vulnbridge:connector@...;` line", world.display()));
    line.trim_end_matches(';').trim().to_owned()
}

/// `V0_3` for `0.3.0`: the line a version belongs to.
fn line_name(version: &str) -> String {
    let mut parts = version.split('.');
    let (major, minor) = (parts.next().unwrap_or("0"), parts.next().unwrap_or("0"));
    format!("V{major}_{minor}")
}

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    println!("cargo:rerun-if-changed=../../wit/previous");
    let current = version(Path::new("../../wit"));
    let mut dirs: Vec<_> = std::fs::read_dir("../../wit/previous")
        .expect("wit/previous")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("world.wit").is_file())
        .collect();
    dirs.sort();
    let mut code =
        format!("/// The contract version of `wit/` (this host's own).\npub const CURRENT: &str = {current:?};\n");
    code.push_str(&format!(
        "/// The contract version of `wit/`.\npub const {}: &str = {current:?};\n",
        line_name(&current)
    ));
    for dir in dirs {
        let version = version(&dir);
        code.push_str(&format!(
            "/// The contract version of `wit/previous/{}`.\npub const {}: &str = {version:?};\n",
            dir.file_name().unwrap().to_string_lossy(),
            line_name(&version)
        ));
    }
    std::fs::write(Path::new(&out).join("contract_versions.rs"), code).expect("write contract_versions.rs");
}
