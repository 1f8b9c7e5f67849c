//! Reading the repository: files, the workspace's members, sources and binaries, TOML.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ sits in the workspace root")
        .to_path_buf()
}

pub(crate) fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {relative} ({}): {e}", path.display()))
}

pub(crate) fn fail_if_any(what: &str, problems: &[String]) {
    if !problems.is_empty() {
        let mut message = format!("{what}: {} problem(s)\n", problems.len());
        for problem in problems {
            let _ = writeln!(message, "  - {problem}");
        }
        panic!("{message}");
    }
}

/// Every `.rs` file under `dir`, recursively.
pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The workspace's members: directory → package name, from the top-level Cargo.toml.
pub(crate) fn members() -> BTreeMap<String, String> {
    let manifest = read("Cargo.toml");
    let start = manifest
        .find("members = [")
        .expect("Cargo.toml lists its members");
    let list = &manifest[start..];
    let list = &list[list.find('[').unwrap_or(0) + 1..list.find(']').unwrap_or(list.len())];
    list.split(',')
        .map(|m| m.trim().trim_matches('"').to_owned())
        .filter(|m| !m.is_empty())
        .map(|dir| {
            let package = toml_value(&read(&format!("{dir}/Cargo.toml")), "package", "name")
                .unwrap_or_else(|| panic!("{dir}/Cargo.toml has no [package] name"));
            (dir, package)
        })
        .collect()
}

/// Every `.rs` file of every member's `src/` (name relative to the root, text).
pub(crate) fn workspace_sources() -> Vec<(String, String)> {
    let root = root();
    let mut files = Vec::new();
    for dir in members().keys() {
        rust_files(&root.join(dir).join("src"), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let name = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .display()
                .to_string();
            (name, text)
        })
        .collect()
}

/// The binaries the workspace builds: `[[bin]]` names, `src/main.rs` (the package's name) and
/// `src/bin/<name>.rs`.
pub(crate) fn workspace_binaries() -> BTreeSet<String> {
    let root = root();
    let mut bins = BTreeSet::new();
    for (dir, package) in members() {
        let manifest = read(&format!("{dir}/Cargo.toml"));
        let mut main_declared = false;
        for section in manifest.split("[[bin]]").skip(1) {
            let section = section.split("\n[").next().unwrap_or(section);
            if let Some(name) = toml_key(section, "name") {
                bins.insert(name);
            }
            main_declared |= toml_key(section, "path").as_deref() == Some("src/main.rs");
        }
        // src/main.rs is the package's own binary unless a [[bin]] names it otherwise.
        let crate_dir = root.join(dir.as_str());
        if !main_declared && crate_dir.join("src/main.rs").exists() {
            bins.insert(package);
        }
        if let Ok(entries) = std::fs::read_dir(crate_dir.join("src/bin")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "rs") {
                    if let Some(stem) = path.file_stem() {
                        bins.insert(stem.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    bins
}

/// `key = value` in the `[section]` of a TOML text (a string's quotes removed); enough for the
/// flat files of this repository.
pub(crate) fn toml_value(text: &str, section: &str, key: &str) -> Option<String> {
    let header = format!("[{section}]");
    let mut inside = false;
    let mut body = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == header;
            continue;
        }
        if inside {
            body.push_str(line);
            body.push('\n');
        }
    }
    toml_key(&body, key)
}

pub(crate) fn toml_key(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| {
            let v = v.split(" #").next().unwrap_or(v).trim();
            v.trim_matches('"').to_owned()
        })
    })
}
