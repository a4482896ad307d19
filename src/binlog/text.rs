//! Number-to-text helpers for the hot decode path: integer formatting
//! through `itoa` and zero padding without `format!` allocations.

/// Appends the decimal digits of any integer.
pub fn push_int<I: itoa::Integer>(out: &mut String, value: I) {
    let mut buffer = itoa::Buffer::new();
    out.push_str(buffer.format(value));
}

/// Appends `value` zero-padded to at least `width` digits.
pub fn push_padded(out: &mut String, value: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(value);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding() {
        let mut out = String::new();
        push_padded(&mut out, 7, 2);
        push_padded(&mut out, 123, 2);
        push_padded(&mut out, 0, 4);
        push_int(&mut out, -5i64);
        assert_eq!(out, "071230000-5");
    }
}
