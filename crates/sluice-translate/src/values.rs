//! Typed parsers for annotation and ConfigMap values. Each error names the allowed form.

use std::time::Duration;

pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!(
            "`{other}` is not a boolean; use \"true\" or \"false\""
        )),
    }
}

/// Whole seconds, as ingress-nginx writes them (`"60"`), optionally with an `s` suffix.
pub fn parse_timeout(value: &str) -> Result<Duration, String> {
    let trimmed = value.trim();
    let digits = trimmed.strip_suffix('s').unwrap_or(trimmed);
    let allowed = format!(
        "use whole seconds from {} to {}, e.g. \"60\" or \"60s\"",
        TIMEOUT_RANGE.start(),
        TIMEOUT_RANGE.end()
    );
    match digits.parse::<u64>() {
        Ok(n) if TIMEOUT_RANGE.contains(&n) => Ok(Duration::from_secs(n)),
        Ok(n) => Err(format!("{n} seconds is out of range; {allowed}")),
        Err(_) => Err(format!("`{trimmed}` is not a number of seconds; {allowed}")),
    }
}

pub fn parse_redirect_code(value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(code @ (301 | 302 | 307 | 308)) => Ok(code),
        _ => Err(format!(
            "`{}` is not a redirect code; use 301, 302, 307 or 308",
            value.trim()
        )),
    }
}

pub fn parse_seconds(value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| format!("`{}` is not a whole number of seconds", value.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_accept_seconds_with_optional_suffix_and_bounds() {
        assert_eq!(parse_timeout("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_timeout("5s"), Ok(Duration::from_secs(5)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("3601").is_err());
        assert!(parse_timeout("1m").unwrap_err().contains("whole seconds"));
    }

    #[test]
    fn booleans_and_codes_are_strict() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert!(parse_bool("yes").is_err());
        assert_eq!(parse_redirect_code("301"), Ok(301));
        assert!(parse_redirect_code("200").is_err());
    }
}
