//! Go-style durations as cert-manager users write them: `2160h`, `90m`, `1h30m`, `45s`.

use std::time::Duration;

/// Parses a sequence of `<digits><unit>` with units `h`, `m`, `s`; at least one part, nothing else.
///
/// # Errors
/// A message saying what is wrong, for the condition.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("is empty".to_owned());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            other => return Err(format!("{text:?}: unknown unit {other:?} (use h, m or s)")),
        };
        let n: u64 = digits.parse().map_err(|_| format!("{text:?}: a number must precede {c:?}"))?;
        total =
            n.checked_mul(unit).and_then(|v| total.checked_add(v)).ok_or_else(|| format!("{text:?} is too long"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("{text:?}: {digits} has no unit (use h, m or s)"));
    }
    if total == 0 {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("2160h"), Ok(Duration::from_secs(2160 * 3600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("45s"), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn rejects_bad_input() {
        for bad in ["", "10", "h", "10d", "0s", "1.5h", "-1h"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }
}
