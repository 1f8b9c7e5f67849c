//! The Dockerfile's instructions, and whether an image is pinned.

use crate::repo::read;

/// The Dockerfile's instructions: comment lines dropped, `\` continuations joined.
pub(crate) fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((word.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    instructions
}

/// True when an image reference carries a tag (or digest) other than `latest`.
pub(crate) fn pinned(image: &str) -> bool {
    if image.contains("@sha256:") {
        return true;
    }
    let name = image.rsplit('/').next().unwrap_or(image);
    match name.split_once(':') {
        Some((_, tag)) => !tag.is_empty() && tag != "latest" && !tag.contains('$'),
        None => false,
    }
}
