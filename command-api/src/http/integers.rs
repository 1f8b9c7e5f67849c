//! Integers written as decimals. JSON Schema calls `10.0` and `1e1` integers, so a client
//! generated from the document may send them where an integer is due; serde reads them as
//! doubles and refuses them for an `i64`. Before parsing, each number literal that denotes an
//! integer is rewritten as that integer — from its digits, exactly, never through a double
//! (`1.0000000000000001` is not 1 and stays a decimal, refused like `1.5`).

use std::borrow::Cow;

/// The body with every number literal outside strings that has a fraction or an exponent and
/// denotes an integer of `i64` written as that integer; anything else is left as it is, for
/// the JSON parser to judge.
pub(crate) fn integral_literals(body: &[u8]) -> Cow<'_, [u8]> {
    if !body.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        return Cow::Borrowed(body);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < body.len() && body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(body.len());
                out.extend_from_slice(&body[start..i]);
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < body.len()
                    && matches!(body[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let literal = &body[start..i];
                match integer(literal) {
                    Some(value) => out.extend_from_slice(value.to_string().as_bytes()),
                    None => out.extend_from_slice(literal),
                }
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// The integer a decimal literal (`-12.50e1`) denotes, when it has a fraction or an exponent,
/// denotes a whole number and fits `i64`.
fn integer(literal: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(literal).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        // JSON's grammar: a fraction has digits.
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (mantissa, ""),
    };
    let digits_only = |digits: &str| digits.bytes().all(|b| b.is_ascii_digit());
    // JSON's grammar again: digits before the point, no leading zero.
    let leading_zero = whole.len() > 1 && whole.starts_with('0');
    if whole.is_empty() || leading_zero || !digits_only(whole) || !digits_only(fraction) {
        return None;
    }
    if fraction.is_empty() && exponent == 0 && !text.contains(['e', 'E', '.']) {
        return None; // a plain integer: nothing to rewrite
    }
    // digits × 10^(exponent − fraction's length)
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let shift = i64::from(exponent) - fraction.len() as i64;
    let (kept, dropped) = if shift >= 0 {
        if digits.is_empty() {
            return Some(0);
        }
        if digits.len() as i64 + shift > 19 {
            return None;
        }
        (format!("{digits}{}", "0".repeat(shift as usize)), "")
    } else {
        let cut = digits.len() as i64 + shift;
        if cut <= 0 {
            ("0".to_owned(), digits)
        } else {
            (digits[..cut as usize].to_owned(), &digits[cut as usize..])
        }
    };
    if !dropped.bytes().all(|b| b == b'0') {
        return None;
    }
    let magnitude: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().ok()?
    };
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(body: &str) -> String {
        String::from_utf8(integral_literals(body.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn integral_decimals_become_integers_exactly_and_the_rest_is_left_alone() {
        for (literal, expected) in [
            ("10.0", Some(10)),
            ("1e1", Some(10)),
            ("1.5e1", Some(15)),
            ("-2.00", Some(-2)),
            ("-0.0", Some(0)),
            ("0e5", Some(0)),
            ("12.50e1", Some(125)),
            ("9223372036854775807.0", Some(i64::MAX)),
            ("-9223372036854775808.0", Some(i64::MIN)),
            ("9223372036854775808.0", None),
            ("1.5", None),
            ("1.0000000000000001", None),
            ("4503599627370496.7", None),
            ("9007199254740993.0", Some(9_007_199_254_740_993)),
            ("1e400", None),
            ("1e-400", None),
            ("100e-2", Some(1)),
            ("10", None),
            ("1.", None),
            ("01.0", None),
            (".5", None),
            ("1e", None),
        ] {
            assert_eq!(integer(literal.as_bytes()), expected, "{literal}");
        }
    }

    #[test]
    fn only_numbers_outside_strings_are_rewritten() {
        assert_eq!(
            rewritten(r#"{"amount":10.0,"description":"10.0 \"2.0\" \\","n":[1e2,-3.50e1,1.5]}"#),
            r#"{"amount":10,"description":"10.0 \"2.0\" \\","n":[100,-35,1.5]}"#
        );
        assert_eq!(rewritten(r#"{"a":1}"#), r#"{"a":1}"#);
        // Malformed input stays malformed, for the parser to refuse.
        assert_eq!(
            rewritten(r#"{"a":1.0.0,"b":"unterminated"#),
            r#"{"a":1.0.0,"b":"unterminated"#
        );
    }
}
