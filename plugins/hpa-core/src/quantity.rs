//! Kubernetes quantities ("500m", "1.5", "2Gi", 10) parsed exactly into
//! milli-units, the integer unit the HPA computes in (`Quantity.MilliValue()`,
//! which rounds up).

use serde::{Deserialize, Deserializer};

/// A quantity in milli-units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Milli(pub i64);

impl Milli {
    /// Converts a sample in base units to milli-units the way
    /// `Quantity.MilliValue()` would for the same decimal value: rounding up.
    /// The small epsilon absorbs binary floating-point noise (0.1 * 1000 is
    /// 100.00000000000001, which must stay 100).
    pub fn from_base(value: f64) -> Milli {
        let scaled = value * 1000.0;
        Milli((scaled - 1e-6).ceil().clamp(i64::MIN as f64, i64::MAX as f64) as i64)
    }
}

/// Parses a quantity string into milli-units, rounding up like `MilliValue()`.
pub fn parse_milli(text: &str) -> Result<Milli, String> {
    let text = text.trim();
    let bad = || format!("invalid quantity {text:?}");
    let number_end =
        text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    if !int_part.chars().chain(frac_part.chars()).all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    // mantissa * 10^exp10 * 2^exp2 is the value in base units.
    let mut mantissa: i128 = 0;
    for c in int_part.chars().chain(frac_part.chars()) {
        mantissa = mantissa.checked_mul(10).and_then(|m| m.checked_add(i128::from(c as u8 - b'0'))).ok_or_else(bad)?;
    }
    let mut exp10: i32 = -(frac_part.len() as i32);
    let mut exp2: u32 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        s if s.starts_with(['e', 'E']) => {
            exp10 += s[1..].parse::<i32>().map_err(|_| bad())?;
        }
        _ => return Err(bad()),
    }
    // to milli-units
    exp10 += 3;
    let mut value = mantissa.checked_shl(exp2).ok_or_else(bad)?;
    if exp10 >= 0 {
        value = value.checked_mul(10i128.checked_pow(exp10 as u32).ok_or_else(bad)?).ok_or_else(bad)?;
    } else {
        let divisor = 10i128.checked_pow((-exp10) as u32).unwrap_or(i128::MAX);
        // round up (towards +inf for positive values, like MilliValue)
        value = (value + divisor - 1) / divisor;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map(Milli).map_err(|_| bad())
}

/// The schema of a quantity field: a JSON number in base units or a
/// Kubernetes quantity string (`"500m"`, `"1Gi"`).
#[cfg(feature = "schema")]
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Quantity {
    Number(f64),
    Text(String),
}

/// Accepts a JSON number (base units) or a quantity string.
pub(crate) fn deserialize_milli<'de, D: Deserializer<'de>>(de: D) -> Result<Milli, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(f64),
        Text(String),
    }
    match Raw::deserialize(de)? {
        // Go through the shortest decimal text of the number so 0.1 is exactly 100m.
        Raw::Number(n) => parse_milli(&format!("{n}")).map_err(serde::de::Error::custom),
        Raw::Text(t) => parse_milli(&t).map_err(serde::de::Error::custom),
    }
}

/// Like [`deserialize_milli`] but for a plain float (tolerances).
pub(crate) fn deserialize_fraction<'de, D: Deserializer<'de>>(de: D) -> Result<Option<f64>, D::Error> {
    let milli = deserialize_milli(de)?;
    Ok(Some(milli.0 as f64 / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities() {
        for (text, milli) in [
            ("500m", 500),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            ("2k", 2_000_000),
            ("1Ki", 1_024_000),
            ("1Gi", 1_073_741_824_000),
            ("100n", 1), // rounds up like MilliValue
            ("1e3", 1_000_000),
            ("-2", -2000),
            ("15", 15000),
        ] {
            assert_eq!(parse_milli(text), Ok(Milli(milli)), "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "abc", "1x", "1.2.3", "m"] {
            assert!(parse_milli(text).is_err(), "{text}");
        }
    }

    #[test]
    fn base_values_round_up_without_float_noise() {
        assert_eq!(Milli::from_base(0.1), Milli(100));
        assert_eq!(Milli::from_base(0.123456789), Milli(124));
        assert_eq!(Milli::from_base(15.0), Milli(15000));
        assert_eq!(Milli::from_base(1073741824.0), Milli(1_073_741_824_000));
    }
}
