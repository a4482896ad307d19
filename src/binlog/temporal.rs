//! Date and time values from row images, rendered as MySQL's text protocol
//! shows them (and canal forwards them): `YYYY-MM-DD hh:mm:ss[.ffffff]`,
//! `[-]hh:mm:ss[.f]`, zero dates kept as zeros, never "corrected".
//!
//! Two encodings exist per type: the pre-5.6 ones (DATETIME as a decimal
//! number, TIME as a signed decimal HHMMSS, TIMESTAMP as little-endian
//! seconds) and the 5.6 "2" ones (big-endian packed fields plus 0-3 bytes of
//! fractional seconds, `fsp` in the table map metadata).

use jiff::tz::TimeZone;

use super::{bytes::ByteReader, text::push_padded};

/// Bytes of fractional seconds for a given precision.
pub fn fraction_bytes(fsp: u8) -> usize {
    usize::from(fsp).div_ceil(2)
}

fn push2(out: &mut String, n: u64) {
    push_padded(out, n, 2);
}

fn push4(out: &mut String, n: u64) {
    push_padded(out, n, 4);
}

/// Appends `.` and the first `fsp` digits of a microsecond count.
fn push_fraction(out: &mut String, micros: u64, fsp: u8) {
    if fsp == 0 {
        return;
    }
    let fsp = u32::from(fsp.min(6));
    out.push('.');
    push_padded(out, (micros % 1_000_000) / 10u64.pow(6 - fsp), fsp as usize);
}

fn push_date(out: &mut String, year: u64, month: u64, day: u64) {
    push4(out, year);
    out.push('-');
    push2(out, month);
    out.push('-');
    push2(out, day);
}

fn push_clock(out: &mut String, hour: u64, minute: u64, second: u64) {
    push2(out, hour);
    out.push(':');
    push2(out, minute);
    out.push(':');
    push2(out, second);
}

/// DATE: 3 bytes little-endian, `day | month << 5 | year << 9`.
pub fn date(cursor: &mut ByteReader<'_>, out: &mut String) -> Option<()> {
    let packed = cursor.uint_le(3)?;
    push_date(out, packed >> 9, (packed >> 5) & 0x0f, packed & 0x1f);
    Some(())
}

/// YEAR: one byte, years since 1900; 0 is the zero year `0000`.
pub fn year(cursor: &mut ByteReader<'_>, out: &mut String) -> Option<()> {
    let offset = cursor.u8()?;
    if offset == 0 {
        out.push_str("0000");
    } else {
        push4(out, 1900 + u64::from(offset));
    }
    Some(())
}

/// DATETIME (old): 8 bytes little-endian holding the decimal YYYYMMDDhhmmss.
pub fn datetime_v1(cursor: &mut ByteReader<'_>, out: &mut String) -> Option<()> {
    let value = cursor.u64_le()?;
    let (date, time) = (value / 1_000_000, value % 1_000_000);
    push_date(out, date / 10_000, date / 100 % 100, date % 100);
    out.push(' ');
    push_clock(out, time / 10_000, time / 100 % 100, time % 100);
    Some(())
}

/// Reads the fractional part that follows a DATETIME2/TIMESTAMP2 value, in
/// microseconds.
fn unsigned_fraction(cursor: &mut ByteReader<'_>, fsp: u8) -> Option<u64> {
    Some(match fsp {
        0 => 0,
        1 | 2 => cursor.uint_be(1)? * 10_000,
        3 | 4 => cursor.uint_be(2)? * 100,
        _ => cursor.uint_be(3)?,
    })
}

/// DATETIME2: 5 bytes big-endian, offset by 2^39, then the fraction.
pub fn datetime_v2(cursor: &mut ByteReader<'_>, fsp: u8, out: &mut String) -> Option<()> {
    const OFFSET: i64 = 0x80_0000_0000;
    let packed = cursor.uint_be(5)? as i64 - OFFSET;
    let micros = unsigned_fraction(cursor, fsp)?;
    // Negative DATETIME values cannot be stored; treat the magnitude as the
    // server would print it rather than panic on corrupt input.
    let packed = packed.unsigned_abs();
    let ymd = packed >> 17;
    let year_month = ymd >> 5;
    let hms = packed & ((1 << 17) - 1);
    push_date(out, year_month / 13, year_month % 13, ymd & 0x1f);
    out.push(' ');
    push_clock(out, hms >> 12, (hms >> 6) & 0x3f, hms & 0x3f);
    push_fraction(out, micros, fsp);
    Some(())
}

/// Renders seconds since the epoch in `zone`; 0 is the zero TIMESTAMP.
fn push_epoch_seconds(out: &mut String, seconds: u64, zone: &TimeZone) {
    if seconds == 0 {
        out.push_str("0000-00-00 00:00:00");
        return;
    }
    let civil = i64::try_from(seconds)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|ts| zone.to_datetime(ts));
    match civil {
        Some(dt) => {
            push_date(out, dt.year() as u64, dt.month() as u64, dt.day() as u64);
            out.push(' ');
            push_clock(
                out,
                dt.hour() as u64,
                dt.minute() as u64,
                dt.second() as u64,
            );
        }
        // A u32 of seconds always fits jiff's range; keep the raw number if not.
        None => {
            push_padded(out, seconds, 1);
        }
    }
}

/// TIMESTAMP (old): 4 bytes little-endian seconds since the epoch.
pub fn timestamp_v1(cursor: &mut ByteReader<'_>, zone: &TimeZone, out: &mut String) -> Option<()> {
    let seconds = cursor.uint_le(4)?;
    push_epoch_seconds(out, seconds, zone);
    Some(())
}

/// TIMESTAMP2: 4 bytes big-endian seconds, then the fraction.
pub fn timestamp_v2(
    cursor: &mut ByteReader<'_>,
    fsp: u8,
    zone: &TimeZone,
    out: &mut String,
) -> Option<()> {
    let seconds = cursor.uint_be(4)?;
    let micros = unsigned_fraction(cursor, fsp)?;
    push_epoch_seconds(out, seconds, zone);
    push_fraction(out, micros, fsp);
    Some(())
}

/// TIME (old): 3 bytes little-endian signed, the decimal [-]HHMMSS.
pub fn time_v1(cursor: &mut ByteReader<'_>, out: &mut String) -> Option<()> {
    let raw = cursor.uint_le(3)? as i64;
    let value = if raw & 0x80_0000 != 0 {
        raw - 0x100_0000
    } else {
        raw
    };
    if value < 0 {
        out.push('-');
    }
    let magnitude = value.unsigned_abs();
    push_clock(
        out,
        magnitude / 10_000,
        magnitude / 100 % 100,
        magnitude % 100,
    );
    Some(())
}

const TIME2_INT_OFFSET: i64 = 0x80_0000;

/// A TIME2 value with a `frac_bytes`-byte fraction as one signed count of
/// microseconds below the packed hour/minute/second (the fraction times
/// `to_micros`), undoing the borrow negative values store.
#[inline]
fn time2_packed(cursor: &mut ByteReader<'_>, frac_bytes: usize, to_micros: i64) -> Option<i64> {
    let mut int_part = cursor.uint_be(3)? as i64 - TIME2_INT_OFFSET;
    let mut frac = cursor.uint_be(frac_bytes)? as i64;
    if int_part < 0 && frac != 0 {
        int_part += 1;
        frac -= 1 << (8 * frac_bytes);
    }
    Some((int_part << 24) + frac * to_micros)
}

/// TIME2: 3 bytes big-endian offset by 2^23 (sign, 10-bit hour, minute,
/// second), then the fraction. Negative values store the fraction
/// "borrowed" from the next second, so the two parts are combined into one
/// signed microsecond count before printing (this is where some decoders
/// overflow on TIME(1)/TIME(2), e.g. `-507:48:27.5`).
pub fn time_v2(cursor: &mut ByteReader<'_>, fsp: u8, out: &mut String) -> Option<()> {
    let packed: i64 = match fsp {
        0 => (cursor.uint_be(3)? as i64 - TIME2_INT_OFFSET) << 24,
        1 | 2 => time2_packed(cursor, 1, 10_000)?,
        3 | 4 => time2_packed(cursor, 2, 100)?,
        _ => cursor.uint_be(6)? as i64 - 0x8000_0000_0000,
    };
    if packed < 0 {
        out.push('-');
    }
    let magnitude = packed.unsigned_abs();
    let hms = magnitude >> 24;
    let micros = magnitude & 0xff_ffff;
    push_clock(out, (hms >> 12) & 0x3ff, (hms >> 6) & 0x3f, hms & 0x3f);
    push_fraction(out, micros, fsp);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(bytes: &[u8], f: impl Fn(&mut ByteReader<'_>, &mut String) -> Option<()>) -> String {
        let mut out = String::new();
        let mut cursor = ByteReader::new(bytes);
        f(&mut cursor, &mut out).expect("enough bytes");
        assert!(cursor.is_empty(), "value consumed exactly its bytes");
        out
    }

    /// Packs a TIME the way MySQL's `TIME_to_longlong_time_packed` does.
    fn time2_bytes(negative: bool, h: i64, m: i64, s: i64, us: i64, fsp: u8) -> Vec<u8> {
        let hms = (h << 12) | (m << 6) | s;
        let mut packed = (hms << 24) + us;
        if negative {
            packed = -packed;
        }
        let mut out = Vec::new();
        match fsp {
            0 => {
                let v = (packed >> 24) + 0x80_0000;
                out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
            }
            1 | 2 => {
                // Mirrors my_time_packed_to_binary: C remainder keeps the sign.
                let int_v = ((packed >> 24) + 0x80_0000) as u32;
                let frac_v = ((packed % (1 << 24)) / 10_000) as i8 as u8;
                out.extend_from_slice(&int_v.to_be_bytes()[1..]);
                out.push(frac_v);
            }
            3 | 4 => {
                let int_v = ((packed >> 24) + 0x80_0000) as u32;
                let frac_v = ((packed % (1 << 24)) / 100) as i16 as u16;
                out.extend_from_slice(&int_v.to_be_bytes()[1..]);
                out.extend_from_slice(&frac_v.to_be_bytes());
            }
            _ => {
                let v = (packed + 0x8000_0000_0000) as u64;
                out.extend_from_slice(&v.to_be_bytes()[2..]);
            }
        }
        out
    }

    #[test]
    fn time2_all_precisions_and_signs() {
        for fsp in 0..=6u8 {
            for &(neg, h, m, s, us) in &[
                (false, 0, 0, 0, 0),
                (false, 12, 34, 56, 0),
                (true, 507, 48, 27, 0),
                (true, 838, 59, 59, 0),
                (true, 0, 0, 1, 500_000),
                (true, 0, 0, 0, 990_000),
                (false, 838, 59, 59, 990_000),
                (true, 1, 2, 3, 450_000),
            ] {
                // Only fractions representable at this precision.
                let unit = 10i64.pow(6 - u32::from(fsp));
                let us = us / unit * unit;
                let bytes = time2_bytes(neg, h, m, s, us, fsp);
                let mut expected = String::new();
                if neg && (h, m, s, us) != (0, 0, 0, 0) {
                    expected.push('-');
                }
                expected.push_str(&format!("{h:02}:{m:02}:{s:02}"));
                if fsp > 0 {
                    expected.push_str(&format!(".{:06}", us)[..=usize::from(fsp)]);
                }
                assert_eq!(
                    render(&bytes, |c, o| time_v2(c, fsp, o)),
                    expected,
                    "fsp={fsp} bytes={bytes:02x?}"
                );
            }
        }
    }

    #[test]
    fn time2_negative_fixture_value() {
        // From the MySQL 8.0.40 fixture time_issue.000001 (TIME(0)).
        let bytes = time2_bytes(true, 507, 48, 27, 0, 0);
        assert_eq!(render(&bytes, |c, o| time_v2(c, 0, o)), "-507:48:27");
    }

    #[test]
    fn datetime2_and_zero() {
        // 2024-02-29 13:14:15.123456
        let ym = 2024 * 13 + 2;
        let packed: u64 = ((((ym << 5) | 29) << 17) | (13 << 12) | (14 << 6) | 15) + 0x80_0000_0000;
        let mut bytes = packed.to_be_bytes()[3..].to_vec();
        bytes.extend_from_slice(&123_456u32.to_be_bytes()[1..]);
        assert_eq!(
            render(&bytes, |c, o| datetime_v2(c, 6, o)),
            "2024-02-29 13:14:15.123456"
        );
        let mut zero = 0x80_0000_0000u64.to_be_bytes()[3..].to_vec();
        zero.push(0);
        assert_eq!(
            render(&zero, |c, o| datetime_v2(c, 2, o)),
            "0000-00-00 00:00:00.00"
        );
    }

    #[test]
    fn timestamps_in_zones() {
        let utc = TimeZone::UTC;
        let bytes = 1_700_000_000u32.to_be_bytes();
        assert_eq!(
            render(&bytes, |c, o| timestamp_v2(c, 0, &utc, o)),
            "2023-11-14 22:13:20"
        );
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(
            render(&bytes, |c, o| timestamp_v2(c, 0, &shanghai, o)),
            "2023-11-15 06:13:20"
        );
        let mut zero = vec![0, 0, 0, 0];
        zero.extend_from_slice(&[0, 0]);
        assert_eq!(
            render(&zero, |c, o| timestamp_v2(c, 3, &utc, o)),
            "0000-00-00 00:00:00.000"
        );
        assert_eq!(
            render(&1u32.to_le_bytes(), |c, o| timestamp_v1(c, &utc, o)),
            "1970-01-01 00:00:01"
        );
    }

    #[test]
    fn old_formats() {
        let date = (2023u32 << 9) | (7 << 5) | 4;
        assert_eq!(render(&date.to_le_bytes()[..3], date_fn), "2023-07-04");
        assert_eq!(render(&[0, 0, 0], date_fn), "0000-00-00");
        assert_eq!(
            render(&20_230_704_123_456_u64.to_le_bytes(), datetime_v1),
            "2023-07-04 12:34:56"
        );
        let minus = (-8_385_959i32 as u32).to_le_bytes();
        assert_eq!(render(&minus[..3], time_v1), "-838:59:59");
        assert_eq!(render(&[0], year), "0000");
        assert_eq!(render(&[155], year), "2055");
    }

    fn date_fn(c: &mut ByteReader<'_>, o: &mut String) -> Option<()> {
        date(c, o)
    }
}
