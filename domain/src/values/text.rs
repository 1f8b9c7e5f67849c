//! Text from commands: titles, names, descriptions, the shop's references — and the
//! patterns the OpenAPI documents state them with.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Non-empty, trimmed text of bounded length (titles, names, descriptions), without control
/// characters (tab and line breaks aside): PostgreSQL cannot store a NUL, and the others have
/// no business in a promotion's text. Checked where a command is built ([`Text::parse`]);
/// text read back from a recorded event or a snapshot is taken as it was stored, so a rule
/// made stricter later never makes the log unreadable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub struct Text(String);

impl Text {
    /// Longest text accepted, in characters (as sent, before trimming).
    pub const MAX_CHARS: usize = 1000;
    /// Longest reference to something of the shop's (an order id), in characters.
    pub const MAX_REFERENCE_CHARS: usize = 128;

    /// [`Text::parse_optional`] as an ECMA-262 pattern (the OpenAPI documents state it): no
    /// control character but tab, line feed and carriage return.
    pub const OPTIONAL_PATTERN: &'static str = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";
    /// [`Text::parse`] as a pattern: as [`Text::OPTIONAL_PATTERN`], with at least one character
    /// that is neither white space nor U+FEFF.
    pub const PATTERN: &'static str = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f\ufeff][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";
    /// [`Text::parse_reference`] as a pattern: not blank, no control character at all.
    pub const REFERENCE_PATTERN: &'static str =
        r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f\ufeff][^\x00-\x1f\x7f-\x9f]*$";

    /// Parses text that must not be blank: at least one character that is neither white space
    /// nor U+FEFF (which Rust's `trim` keeps but the schemas' ECMA-262 `\S` counts as space).
    pub fn parse(value: &str, field: &'static str) -> Result<Self, DomainError> {
        let text = Self::parse_optional(value, field)?;
        if text.0.chars().all(|c| c.is_whitespace() || c == '\u{feff}') {
            return Err(DomainError::invalid(field, "must not be blank"));
        }
        Ok(text)
    }

    /// Parses text that may be empty (descriptions): at most [`Text::MAX_CHARS`] characters
    /// as sent, no control characters but tab, line feed and carriage return; trimmed.
    pub fn parse_optional(value: &str, field: &'static str) -> Result<Self, DomainError> {
        if value.chars().count() > Self::MAX_CHARS {
            return Err(DomainError::invalid(
                field,
                "must be at most 1000 characters",
            ));
        }
        if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(DomainError::invalid(
                field,
                "must not contain control characters",
            ));
        }
        Ok(Self(value.trim().to_owned()))
    }

    /// Parses a reference the shop made (an order id): not blank, at most
    /// [`Text::MAX_REFERENCE_CHARS`] characters as sent, and no control characters at all.
    pub fn parse_reference(value: &str, field: &'static str) -> Result<Self, DomainError> {
        if value.chars().count() > Self::MAX_REFERENCE_CHARS {
            return Err(DomainError::invalid(
                field,
                "must be at most 128 characters",
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                field,
                "must not contain control characters",
            ));
        }
        Self::parse(value, field)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Text as it was recorded (an event, a snapshot): not checked again.
impl From<String> for Text {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<Text> for String {
    fn from(value: Text) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents' patterns (and lengths, in characters as sent) accept exactly what the
    /// parsers accept: a client that keeps to the document is never refused for its text, and
    /// one the parser refuses breaks the document.
    fn agree(
        pattern: &str,
        max: usize,
        parse: fn(&str, &'static str) -> Result<Text, DomainError>,
        sample: &str,
    ) {
        let documented =
            regex::Regex::new(pattern).unwrap().is_match(sample) && sample.chars().count() <= max;
        assert_eq!(
            documented,
            parse(sample, "field").is_ok(),
            "{pattern} and the parser disagree on {sample:?}"
        );
    }

    const TRICKY: &[char] = &[
        'a', ' ', '\t', '\n', '\r', '\u{0}', '\u{1}', '\u{b}', '\u{c}', '\u{1c}', '\u{7f}',
        '\u{85}', '\u{9f}', '\u{a0}', '\u{ad}', '\u{2028}', '\u{3000}', '\u{feff}', '\u{200b}',
        'é', '😀',
    ];

    #[test]
    fn the_text_patterns_accept_what_the_parsers_accept() {
        let long = |n: usize| "x".repeat(n);
        let mut samples: Vec<String> = vec![
            String::new(),
            long(128),
            long(129),
            long(1000),
            long(1001),
            format!(" {}", long(999)),
            format!(" {} ", long(999)),
        ];
        for a in TRICKY {
            samples.push(a.to_string());
            for b in TRICKY {
                samples.push(format!("{a}{b}"));
                samples.push(format!("{a}x{b}"));
            }
        }
        for sample in &samples {
            agree(Text::PATTERN, Text::MAX_CHARS, Text::parse, sample);
            agree(
                Text::OPTIONAL_PATTERN,
                Text::MAX_CHARS,
                Text::parse_optional,
                sample,
            );
            agree(
                Text::REFERENCE_PATTERN,
                Text::MAX_REFERENCE_CHARS,
                Text::parse_reference,
                sample,
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_text_patterns_agree_with_the_parsers_on_any_text(
            sample in proptest::collection::vec(proptest::sample::select(TRICKY), 0..6)
        ) {
            let sample: String = sample.into_iter().collect();
            agree(Text::PATTERN, Text::MAX_CHARS, Text::parse, &sample);
            agree(Text::OPTIONAL_PATTERN, Text::MAX_CHARS, Text::parse_optional, &sample);
            agree(Text::REFERENCE_PATTERN, Text::MAX_REFERENCE_CHARS, Text::parse_reference, &sample);
        }
    }

    #[test]
    fn text_is_trimmed_and_blank_text_is_refused_where_required() {
        assert!(Text::parse("   ", "title").is_err());
        assert_eq!(
            Text::parse("  Spring sale ", "title").map(|t| t.0),
            Ok("Spring sale".into())
        );
        assert!(Text::parse_optional("", "description").is_ok());
        assert!(Text::parse(&"x".repeat(1001), "title").is_err());
        // U+FEFF survives `trim` but is white space to the schemas' ECMA-262 `\S`.
        assert!(Text::parse("\u{feff}", "title").is_err());
        assert!(Text::parse(" \u{feff}\u{3000}", "title").is_err());
        assert!(Text::parse("\u{feff}Sale", "title").is_ok());
    }

    #[test]
    fn recorded_text_is_read_back_as_it_was_stored() {
        let stored: Text = serde_json::from_str(r#""a\u0007b""#).unwrap();
        assert_eq!(
            stored.as_str(),
            "a\u{7}b",
            "a stricter rule never fails a recorded event"
        );
    }

    #[test]
    fn text_refuses_control_characters_but_keeps_line_breaks_in_descriptions() {
        assert!(Text::parse("a\u{0}b", "description").is_err());
        assert!(Text::parse("a\u{1b}[31mb", "title").is_err());
        assert!(Text::parse_optional("line one\nline two\tend", "description").is_ok());
        assert!(Text::parse_reference(" O-1 ", "orderId").is_ok(), "trimmed");
        assert!(
            Text::parse_reference("O-1\n", "orderId").is_err(),
            "a line feed is control"
        );
        assert!(Text::parse_reference("O-1\nO-2", "orderId").is_err());
        assert!(Text::parse_reference(&"o".repeat(129), "orderId").is_err());
        assert!(Text::parse_reference(&"o".repeat(128), "orderId").is_ok());
    }
}
