//! MySQL's binary DECIMAL format (as stored in row images) to exact plain
//! text with exactly `scale` fraction digits — the form canal clients parse.
//!
//! The value is stored as groups of 9 decimal digits in 4 bytes (big-endian),
//! with shorter leading/trailing groups for the remainder; the sign is the
//! inverted top bit, and negative numbers have every byte inverted.

use super::text::push_padded;

const DIGITS_PER_GROUP: usize = 9;
const BYTES_FOR_DIGITS: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Bytes a DECIMAL(precision, scale) occupies in a row image.
pub fn binary_size(precision: u8, scale: u8) -> usize {
    let (precision, scale) = (usize::from(precision), usize::from(scale));
    let integral = precision.saturating_sub(scale);
    group_bytes(integral) + group_bytes(scale)
}

fn group_bytes(digits: usize) -> usize {
    (digits / DIGITS_PER_GROUP) * 4 + BYTES_FOR_DIGITS[digits % DIGITS_PER_GROUP]
}

/// Why a decimal could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// The column's precision and scale are impossible.
    #[error("DECIMAL({precision},{scale}) is not a valid definition")]
    BadDefinition {
        /// Digits in total.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// The value is not as long as its definition says.
    #[error("DECIMAL value needs {expected} bytes, got {actual}")]
    BadLength {
        /// Bytes the definition takes.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A group of digits holds a number it cannot.
    #[error("DECIMAL group holds {0}, more than its digits allow")]
    BadGroup(u32),
}

/// Renders `bytes` (exactly [`binary_size`] long) as text into `out`.
pub fn write_decimal(
    bytes: &[u8],
    precision: u8,
    scale: u8,
    out: &mut String,
) -> Result<(), DecimalError> {
    if precision == 0 || precision > 65 || scale > 30 || scale > precision {
        return Err(DecimalError::BadDefinition { precision, scale });
    }
    let integral = usize::from(precision - scale);
    let scale = usize::from(scale);
    let expected = binary_size(precision, scale as u8);
    if bytes.len() != expected {
        return Err(DecimalError::BadLength {
            expected,
            actual: bytes.len(),
        });
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 == 0);
    let mut groups = Groups {
        bytes,
        mask: if negative { 0xff } else { 0 },
        index: 0,
    };
    let start = out.len();
    if negative {
        out.push('-');
    }
    let digits_start = out.len();
    write_integral(&mut groups, integral, out)?;
    if scale > 0 {
        out.push('.');
        write_fraction(&mut groups, scale, out)?;
    }
    // BigDecimal has no negative zero: "-0.00" reads as "0.00".
    if negative && out[digits_start..].bytes().all(|b| b == b'0' || b == b'.') {
        out.remove(start);
    }
    Ok(())
}

/// The digit groups of one stored value, read in order.
struct Groups<'a> {
    bytes: &'a [u8],
    /// Negative values have every byte inverted.
    mask: u8,
    index: usize,
}

impl Groups<'_> {
    /// The next group: `len` bytes holding at most `max_digits` digits.
    #[inline]
    fn next(&mut self, len: usize, max_digits: usize) -> Result<u32, DecimalError> {
        let mut value: u32 = 0;
        for i in 0..len {
            let mut byte = self.bytes[self.index + i] ^ self.mask;
            if self.index + i == 0 {
                // The sign is the inverted top bit of the first byte.
                byte ^= 0x80;
            }
            value = (value << 8) | u32::from(byte);
        }
        self.index += len;
        if u64::from(value) >= 10u64.pow(max_digits as u32) {
            return Err(DecimalError::BadGroup(value));
        }
        Ok(value)
    }
}

/// The integral digits without leading zeros (`0` when there are none).
fn write_integral(
    groups: &mut Groups<'_>,
    integral: usize,
    out: &mut String,
) -> Result<(), DecimalError> {
    let mut wrote_integral = false;
    let leading = integral % DIGITS_PER_GROUP;
    if leading > 0 {
        let value = groups.next(BYTES_FOR_DIGITS[leading], leading)?;
        if value != 0 {
            push_padded(out, u64::from(value), 1);
            wrote_integral = true;
        }
    }
    for _ in 0..integral / DIGITS_PER_GROUP {
        let value = groups.next(4, DIGITS_PER_GROUP)?;
        if wrote_integral {
            push_padded(out, u64::from(value), 9);
        } else if value != 0 {
            push_padded(out, u64::from(value), 1);
            wrote_integral = true;
        }
    }
    if !wrote_integral {
        out.push('0');
    }
    Ok(())
}

/// Exactly `scale` fraction digits.
fn write_fraction(
    groups: &mut Groups<'_>,
    scale: usize,
    out: &mut String,
) -> Result<(), DecimalError> {
    for _ in 0..scale / DIGITS_PER_GROUP {
        let value = groups.next(4, DIGITS_PER_GROUP)?;
        push_padded(out, u64::from(value), 9);
    }
    let trailing = scale % DIGITS_PER_GROUP;
    if trailing > 0 {
        let value = groups.next(BYTES_FOR_DIGITS[trailing], trailing)?;
        push_padded(out, u64::from(value), trailing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], p: u8, s: u8) -> String {
        let mut out = String::new();
        write_decimal(bytes, p, s, &mut out).unwrap();
        out
    }

    /// Encodes a decimal text the way the server does, to test round trips.
    fn encode(text: &str, precision: u8, scale: u8) -> Vec<u8> {
        let negative = text.starts_with('-');
        let text = text.trim_start_matches('-');
        let (int_part, frac_part) = text.split_once('.').unwrap_or((text, ""));
        let integral = usize::from(precision - scale);
        let scale = usize::from(scale);
        let int_digits = format!("{int_part:0>integral$}");
        let frac_digits = format!("{frac_part:0<scale$}");
        let mut out = Vec::new();
        let mut push = |digits: &str| {
            let value: u32 = digits.parse().unwrap_or(0);
            let len = BYTES_FOR_DIGITS[digits.len()];
            out.extend_from_slice(&value.to_be_bytes()[4 - len..]);
        };
        let lead = integral % 9;
        if lead > 0 {
            push(&int_digits[..lead]);
        }
        for chunk in int_digits.as_bytes()[lead..].chunks(9) {
            push(std::str::from_utf8(chunk).unwrap());
        }
        for chunk in frac_digits.as_bytes().chunks(9) {
            push(std::str::from_utf8(chunk).unwrap());
        }
        out[0] ^= 0x80;
        if negative {
            for b in &mut out {
                *b ^= 0xff;
            }
        }
        out
    }

    #[test]
    fn known_encodings() {
        // DECIMAL(10,2) 1.50 and -1.50
        assert_eq!(decode(&encode("1.50", 10, 2), 10, 2), "1.50");
        assert_eq!(decode(&encode("-1.50", 10, 2), 10, 2), "-1.50");
        // The canonical example from the MySQL source: 1234567890.1234 as DECIMAL(14,4)
        assert_eq!(
            decode(&[0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2], 14, 4),
            "1234567890.1234"
        );
        assert_eq!(
            decode(&[0x7E, 0xF2, 0x04, 0xC7, 0x2D, 0xFB, 0x2D], 14, 4),
            "-1234567890.1234"
        );
    }

    #[test]
    fn extremes_and_zero() {
        let max = format!("{}.{}", "9".repeat(35), "9".repeat(30));
        assert_eq!(decode(&encode(&max, 65, 30), 65, 30), max);
        let min = format!("-{max}");
        assert_eq!(decode(&encode(&min, 65, 30), 65, 30), min);
        assert_eq!(decode(&encode("0", 10, 0), 10, 0), "0");
        assert_eq!(decode(&encode("0.00", 5, 2), 5, 2), "0.00");
        assert_eq!(decode(&encode("-0.00", 5, 2), 5, 2), "0.00");
        assert_eq!(
            decode(&encode("0.000000001", 20, 10), 20, 10),
            "0.0000000010"
        );
        assert_eq!(decode(&encode("1000000000", 19, 0), 19, 0), "1000000000");
    }

    #[test]
    fn sizes() {
        assert_eq!(binary_size(10, 2), 5);
        assert_eq!(binary_size(14, 4), 7);
        assert_eq!(binary_size(65, 30), 30);
    }

    #[test]
    fn rejects_impossible_groups_and_definitions() {
        let mut out = String::new();
        assert!(write_decimal(&[0xff, 0xff], 4, 0, &mut out).is_err());
        assert!(write_decimal(&[0x80], 0, 0, &mut out).is_err());
    }
}
