//! Embeds every `schemas/<kind>.json` in the binary: a Lambda function has no repository
//! beside it, and a new kind's schema is picked up by the next build with no code change.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    let mut code = String::from(
        "/// Every schema in `schemas/`, by kind.\npub(crate) const SCHEMAS: &[(&str, &str)] = &[\n",
    );
    for path in entries {
        let (Some(kind), Some("json")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            code,
            "    ({kind:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("schemas.rs");
    std::fs::write(out, code).expect("schemas.rs written");
}
