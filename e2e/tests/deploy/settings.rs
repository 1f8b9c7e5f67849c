//! The Rust settings structs, read from the sources: which `APP_…` variable names a field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::repo::{members, root, rust_files};

/// The text between the braces of `struct <name> {`, with the file it is in.
pub(crate) fn find_struct(files: &[PathBuf], name: &str) -> Option<(PathBuf, String)> {
    let needle = format!("struct {name} {{");
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let Some(start) = text.find(&needle) else {
            continue;
        };
        let body = &text[start + needle.len()..];
        let mut depth = 1usize;
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some((file.clone(), body[..i].to_owned()));
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// `pub <field>: <Type>` lines of a struct's body.
pub(crate) fn struct_fields(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("pub ")?;
            let (name, ty) = line.split_once(':')?;
            let name = name.trim();
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            Some((
                name.to_owned(),
                ty.trim().trim_end_matches(',').trim().to_owned(),
            ))
        })
        .collect()
}

/// `Option<auth::limit::LimitSettings>` → `auth::limit::LimitSettings`.
pub(crate) fn unwrap_type(ty: &str) -> &str {
    let mut ty = ty.trim();
    for wrapper in ["Option<", "Vec<", "Box<", "Arc<"] {
        if let Some(inner) = ty.strip_prefix(wrapper).and_then(|t| t.strip_suffix('>')) {
            ty = unwrap_type(inner);
        }
    }
    ty
}

/// Where the struct a field's type names is defined: the same file, the crate the path names
/// (`auth::limit::LimitSettings`), the crate a `use` line names, or the same crate.
pub(crate) fn resolve_struct(
    from: &Path,
    ty: &str,
    crates: &BTreeMap<String, String>,
) -> Option<(PathBuf, String)> {
    let root = root();
    let segments: Vec<&str> = ty.split("::").collect();
    let last = *segments.last()?;
    let crate_files = |krate: &str| -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(dir) = crates.get(krate) {
            rust_files(&root.join(dir).join("src"), &mut files);
        }
        files
    };
    let own_crate = from
        .strip_prefix(&root)
        .ok()
        .and_then(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().replace('-', "_"))
        .unwrap_or_default();
    if let Some(found) = find_struct(&[from.to_path_buf()], last) {
        return Some(found);
    }
    if segments.len() > 1 {
        let krate = if segments[0] == "crate" {
            own_crate.as_str()
        } else {
            segments[0]
        };
        if let Some(found) = find_struct(&crate_files(krate), last) {
            return Some(found);
        }
    }
    let source = std::fs::read_to_string(from).unwrap_or_default();
    for line in source.lines() {
        let line = line.trim();
        let Some(path) = line
            .strip_prefix("pub use ")
            .or_else(|| line.strip_prefix("use "))
        else {
            continue;
        };
        let mentions = path
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == last);
        if mentions {
            let krate = path.split("::").next().unwrap_or_default();
            let krate = if krate == "crate" { &own_crate } else { krate };
            if let Some(found) = find_struct(&crate_files(krate), last) {
                return Some(found);
            }
        }
    }
    find_struct(&crate_files(&own_crate), last)
}

/// Checks that `APP_A__B__C` names `a.b.c` of the `Settings` struct in `settings_file`.
pub(crate) fn check_setting(variable: &str, settings_file: &str) -> Result<(), String> {
    let crates: BTreeMap<String, String> = members()
        .into_iter()
        .map(|(dir, package)| (package.replace('-', "_"), dir))
        .collect();
    let path: Vec<String> = variable
        .strip_prefix("APP_")
        .unwrap_or(variable)
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let mut file = root().join(settings_file);
    let (_, mut body) = find_struct(&[file.clone()], "Settings")
        .ok_or_else(|| format!("{settings_file} has no `struct Settings`"))?;
    let mut struct_name = "Settings".to_owned();
    for (depth, key) in path.iter().enumerate() {
        let fields = struct_fields(&body);
        let ty = fields.get(key).ok_or_else(|| {
            format!(
                "{variable}: `{}` is not a setting: `{struct_name}` ({}) has no field `{key}` \
                 (it has: {})",
                path[..=depth].join("."),
                file.strip_prefix(root()).unwrap_or(&file).display(),
                fields.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        if depth + 1 == path.len() {
            return Ok(());
        }
        let ty = unwrap_type(ty);
        let (next_file, next_body) = resolve_struct(&file, ty, &crates).ok_or_else(|| {
            format!(
                "{variable}: `{}` is a `{ty}`, which has no fields to set `{}` in",
                path[..=depth].join("."),
                path[depth + 1..].join(".")
            )
        })?;
        file = next_file;
        body = next_body;
        struct_name = ty.rsplit("::").next().unwrap_or(ty).to_owned();
    }
    Ok(())
}
