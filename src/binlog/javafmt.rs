//! Java's `Float.toString` / `Double.toString` text forms, which canal
//! consumers receive for FLOAT and DOUBLE columns.
//!
//! Java prints the shortest digit string that uniquely identifies the value
//! (JDK 19+), in plain notation when 10^-3 <= |x| < 10^7 (always with a
//! fraction digit: `100.0`) and as `d.dddE<exp>` otherwise (`1.0E20`,
//! `1.5E-4`). Rust's `{:e}` formatting yields the same shortest digits, so we
//! only re-arrange them.

use std::fmt::Write;

/// Appends `value` as Java's `Double.toString` prints it.
pub fn write_f64(value: f64, out: &mut String) {
    write_java(value, value, out);
}

/// Appends `value` as Java's `Float.toString` prints it.
pub fn write_f32(value: f32, out: &mut String) {
    // Widening keeps NaN, the infinities and the sign, all that `special`
    // looks at; the digits still come from the f32.
    write_java(value, f64::from(value), out);
}

/// `widened` is `value` as an f64, for the checks both widths share.
fn write_java<T: std::fmt::LowerExp>(value: T, widened: f64, out: &mut String) {
    if let Some(special) = special(widened) {
        out.push_str(special);
        return;
    }
    let mut scientific = format!("{value:e}");
    if single_digit(&scientific) {
        scientific = format!("{value:.1e}");
    }
    write_from_scientific(&scientific, out);
}

/// Java prints at least two significant digits and, when the shortest form
/// has one, picks the two-digit decimal closest to the value (which differs
/// from appending `0` only for subnormals: `4.9E-324`, not `5.0E-324`).
fn single_digit(scientific: &str) -> bool {
    let mantissa = scientific.split('e').next().unwrap_or_default();
    mantissa.trim_start_matches('-').len() == 1
}

fn special(value: f64) -> Option<&'static str> {
    match (
        value.is_nan(),
        value.is_infinite(),
        value.is_sign_negative(),
    ) {
        (true, _, _) => Some("NaN"),
        (false, true, false) => Some("Infinity"),
        (false, true, true) => Some("-Infinity"),
        _ => None,
    }
}

/// Rearranges Rust's shortest scientific form (`-1.2345e-7`, `1e20`, `0e0`)
/// into Java's layout.
fn write_from_scientific(scientific: &str, out: &mut String) {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if digits.bytes().all(|b| b == b'0') {
        out.push_str("0.0");
        return;
    }
    if (-3..7).contains(&exponent) {
        // The two-digit form only matters in E notation.
        let trimmed = digits.trim_end_matches('0');
        let digits = if trimmed.is_empty() { "0" } else { trimmed };
        if exponent < 0 {
            out.push_str("0.");
            for _ in 0..(-exponent - 1) {
                out.push('0');
            }
            out.push_str(digits);
        } else {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                out.push_str(digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        let _ = write!(out, "E{exponent}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(v: f64) -> String {
        let mut s = String::new();
        write_f64(v, &mut s);
        s
    }

    fn f(v: f32) -> String {
        let mut s = String::new();
        write_f32(v, &mut s);
        s
    }

    #[test]
    fn doubles_match_java() {
        assert_eq!(d(2.5), "2.5");
        assert_eq!(d(100.0), "100.0");
        assert_eq!(d(1.0e20), "1.0E20");
        assert_eq!(d(0.0), "0.0");
        assert_eq!(d(-0.0), "-0.0");
        assert_eq!(d(0.001), "0.001");
        assert_eq!(d(0.0001), "1.0E-4");
        assert_eq!(d(1234567.0), "1234567.0");
        assert_eq!(d(12345678.0), "1.2345678E7");
        assert_eq!(d(-1.5e-7), "-1.5E-7");
        assert_eq!(d(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(d(f64::MAX), "1.7976931348623157E308");
        assert_eq!(d(f64::MIN_POSITIVE), "2.2250738585072014E-308");
        assert_eq!(d(4.9e-324), "4.9E-324");
    }

    #[test]
    fn floats_match_java() {
        assert_eq!(f(1.1), "1.1");
        assert_eq!(f(3.4028235e38), "3.4028235E38");
        assert_eq!(f(-1.175494e-38), "-1.175494E-38");
        assert_eq!(f(100.0), "100.0");
        assert_eq!(f(0.1), "0.1");
    }
}
