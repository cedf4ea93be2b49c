//! Kubernetes resource quantities (`500m`, `1.5`, `128Mi`, `1e9`, `2G`) to
//! base units as `f64`: cores for CPU, bytes for memory.

/// Parses a quantity string; `None` when it is not one.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-'))).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let exponent: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(exponent)
        }
    };
    let value = number * factor;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_the_suffixes_the_api_uses() {
        for (text, expected) in [
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5", 1.5),
            ("250000u", 0.25),
            ("100n", 1e-7),
            ("128Mi", 134_217_728.0),
            ("1Gi", 1_073_741_824.0),
            ("2G", 2e9),
            ("1k", 1000.0),
            ("129e6", 129e6),
            ("1E3", 1000.0),
        ] {
            let value = parse(text).unwrap_or_else(|| panic!("{text} did not parse"));
            assert!((value - expected).abs() <= expected * 1e-12, "{text}: {value} != {expected}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for text in ["", "m", "1Zi", "abc", "1.2.3", "5 m", "1e"] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
