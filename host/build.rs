//! The contract version of each WIT folder the host binds, read from its
//! `package vulnbridge:connector@X.Y.Z;` line: a binding's version comes from the
//! WIT it was generated from, never from a literal kept beside it.

use std::path::Path;

fn version(dir: &str) -> String {
    let world = Path::new(dir).join("world.wit");
    println!("cargo:rerun-if-changed={}", world.display());
    let text = std::fs::read_to_string(&world).unwrap_or_else(|e| panic!("cannot read {}: {e}", world.display()));
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package vulnbridge:connector@"))
        .unwrap_or_else(|| panic!("{} has no `package vulnbridge:connector@...;` line", world.display()));
    line.trim_end_matches(';').trim().to_owned()
}

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let current = version("../wit");
    let v0_2 = version("../wit/previous/v0.2.0");
    let code = format!(
        "/// The contract version of `wit/` (this host's own).\npub const CURRENT: &str = {current:?};\n\
         /// The contract version of `wit/previous/v0.2.0`.\npub const V0_2: &str = {v0_2:?};\n"
    );
    std::fs::write(Path::new(&out).join("contract_versions.rs"), code).expect("write contract_versions.rs");
}
