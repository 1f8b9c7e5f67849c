//! Embeds every `events/<type>.v<N>.json` into the crate, so a binary carries its contract.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("events");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("schemas/events exists")
        .map(|entry| {
            entry
                .expect("readable dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    let mut out = String::from(
        "/// Every embedded schema, sorted by file name.\npub const SCHEMAS: &[EventSchema] = &[\n",
    );
    for name in names {
        let stem = name.trim_end_matches(".json");
        let (event_type, version) = stem.rsplit_once(".v").expect("file named <type>.v<N>.json");
        let version: u16 = version.parse().expect("numeric version in file name");
        let path = dir.join(&name);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    EventSchema {{ event_type: {event_type:?}, version: {version}, json: include_str!({:?}) }},",
            path.display().to_string()
        )
        .expect("write to string");
    }
    out.push_str("];\n");
    let target =
        Path::new(&env::var("OUT_DIR").expect("OUT_DIR set by cargo")).join("catalogue.rs");
    fs::write(target, out).expect("write catalogue.rs");
}
