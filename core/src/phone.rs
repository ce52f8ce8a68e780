//! Mobile numbers (console accounts, SMS receivers): the one normal form they are stored and
//! compared in, and the masked form every listing, log line and audit record shows (a full
//! number is personal data and leaves the server only towards the SMS provider).

/// Spaces, dashes and brackets dropped, an optional leading `+`, then 6–20 digits.
pub fn normalize(raw: &str) -> Result<String, String> {
    let kept: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')')).collect();
    let digits = kept.strip_prefix('+').unwrap_or(&kept);
    if !(6..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{raw:?} is not a phone number (6–20 digits, optionally after +)"));
    }
    Ok(kept)
}

/// The first three and last four characters kept, the way Chinese services print a mobile
/// (`138****5678`); anything shorter keeps only its last two.
pub fn mask(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let n = chars.len();
    if n >= 8 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[n - 4..].iter().collect();
        format!("{head}{}{tail}", "*".repeat(n - 7))
    } else if n > 2 {
        format!("{}{}", "*".repeat(n - 2), chars[n - 2..].iter().collect::<String>())
    } else {
        "*".repeat(n.max(1))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_normalized_or_refused() {
        assert_eq!(super::normalize(" 138-1234 5678 ").unwrap(), "13812345678");
        assert_eq!(super::normalize("+86 138 1234 5678").unwrap(), "+8613812345678");
        for bad in ["", "12345", "1381234567a", "++8613812345678", "138123456789012345678"] {
            assert!(super::normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(super::mask("13812345678"), "138****5678");
        assert_eq!(super::mask("+8613812345678"), "+86*******5678");
        assert_eq!(super::mask("1234"), "**34");
    }
}
