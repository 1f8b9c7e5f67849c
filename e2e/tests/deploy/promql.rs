//! Which series a PromQL expression reads, and where the workspace records each.

use std::collections::BTreeSet;

/// Words of PromQL that are not series: aggregations, keywords, set operators.
pub(crate) const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
    "le",
];
/// Keywords followed by a parenthesised list of label names.
pub(crate) const PROMQL_LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The series an expression selects: identifiers that are not functions (followed by `(`),
/// keywords, label names (inside `{}` or after `by`), durations (`[1m]`), strings or numbers.
pub(crate) fn promql_series(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut series = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, open: char, close: char| {
        let mut depth = 0usize;
        while *i < chars.len() {
            let c = chars[*i];
            if c == '"' || c == '\'' {
                *i += 1;
                while *i < chars.len() && chars[*i] != c {
                    if chars[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    *i += 1;
                    return;
                }
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            skip_to(&mut i, '{', '}');
        } else if c == '[' {
            skip_to(&mut i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            i += 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A Grafana variable ($__rate_interval) or a number (0.99, 1e3).
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let called = next < chars.len() && chars[next] == '(';
            if PROMQL_LABEL_LISTS.contains(&word.as_str()) && called {
                i = next;
                skip_to(&mut i, '(', ')');
            } else if !called && !PROMQL_WORDS.contains(&word.as_str()) {
                series.insert(word);
            }
        } else {
            i += 1;
        }
    }
    series
}

/// Places `"name"` is written in the sources outside a `describe_*!` call (which only documents
/// a series): where it is recorded.
pub(crate) fn recorded_at(sources: &[(String, String)], name: &str) -> Vec<String> {
    let quoted = format!("\"{name}\"");
    let mut places = Vec::new();
    for (file, text) in sources {
        for (at, _) in text.match_indices(&quoted) {
            let before = text[..at].trim_end();
            let before = before.strip_suffix('(').unwrap_or(before).trim_end();
            if !before.ends_with("describe_counter!")
                && !before.ends_with("describe_gauge!")
                && !before.ends_with("describe_histogram!")
            {
                places.push(file.clone());
            }
        }
    }
    places
}

/// True when `name` is recorded through `histogram!(`.
pub(crate) fn recorded_as_histogram(sources: &[(String, String)], name: &str) -> bool {
    let quoted = format!("\"{name}\"");
    sources.iter().any(|(_, text)| {
        text.match_indices(&quoted).any(|(at, _)| {
            text[..at]
                .trim_end()
                .strip_suffix('(')
                .is_some_and(|b| b.trim_end().ends_with("histogram!"))
        })
    })
}
