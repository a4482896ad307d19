//! Column character sets: from a MySQL/MariaDB collation id (what table-map
//! metadata carries) to the decoder that turns stored bytes into text.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// How a column's bytes become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `binary`: bytes, shown as ISO-8859-1 characters byte for byte.
    Binary,
    /// utf8mb3 / utf8mb4.
    Utf8,
    /// UTF-32 big-endian (MySQL `utf32`), which no encoding crate decodes.
    Utf32,
    /// Any other charset, decoded by its WHATWG encoding.
    Encoded(&'static Encoding),
    /// A charset with no decoder here (e.g. `dec8`, `hp8`): bytes shown as
    /// ISO-8859-1 so nothing is lost.
    Unsupported,
}

impl Charset {
    /// Whether values are bytes, not text (the `binary` charset).
    pub fn is_binary(self) -> bool {
        matches!(self, Charset::Binary)
    }

    /// Appends the text of `bytes` to `out`.
    pub fn decode_into(self, bytes: &[u8], out: &mut String) {
        match self {
            Charset::Utf8 => match simdutf8::basic::from_utf8(bytes) {
                Ok(text) => out.push_str(text),
                Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
            },
            Charset::Binary | Charset::Unsupported => push_latin1(bytes, out),
            Charset::Utf32 => {
                for chunk in bytes.chunks(4) {
                    let code = chunk.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
                    let valid = chunk.len() == 4;
                    out.push(
                        char::from_u32(code)
                            .filter(|_| valid)
                            .unwrap_or(char::REPLACEMENT_CHARACTER),
                    );
                }
            }
            Charset::Encoded(encoding) => {
                let (text, _) = encoding.decode_without_bom_handling(bytes);
                out.push_str(&text);
            }
        }
    }

    /// The text of `bytes`, borrowed where no conversion is needed.
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes),
            _ => {
                let mut out = String::with_capacity(bytes.len());
                self.decode_into(bytes, &mut out);
                Cow::Owned(out)
            }
        }
    }

    /// The longest encoding of one character, to turn byte lengths in
    /// table-map metadata back into declared character lengths.
    pub fn max_bytes_per_char(self, name: &str) -> u32 {
        match name {
            "utf8mb4" | "utf16" | "utf32" | "gb18030" => 4,
            "utf8" | "utf8mb3" | "ujis" | "eucjpms" => 3,
            "ucs2" | "utf16le" | "big5" | "sjis" | "cp932" | "gbk" | "gb2312" | "euckr" => 2,
            _ if self == Charset::Utf8 => 3,
            _ => 1,
        }
    }
}

/// Appends bytes as ISO-8859-1 characters (each byte its own code point), the
/// form canal uses for binary values.
pub fn push_latin1(bytes: &[u8], out: &mut String) {
    if bytes.is_ascii()
        && let Ok(text) = simdutf8::basic::from_utf8(bytes)
    {
        // ASCII is its own ISO-8859-1 and UTF-8 text.
        out.push_str(text);
        return;
    }
    out.reserve(bytes.len() * 2);
    out.extend(bytes.iter().map(|&b| char::from(b)));
}

/// The charset name of a collation id, for the ids MySQL 5.x-9.x and
/// MariaDB 10.x-11.x assign.
pub fn charset_name_of_collation(id: u16) -> Option<&'static str> {
    // MariaDB's NOPAD variants are the PAD collation id + 1024.
    let id = if (1024..2048).contains(&id) {
        id - 1024
    } else {
        id
    };
    Some(match id {
        1 | 84 => "big5",
        2 | 9 | 21 | 27 | 77 => "latin2",
        3 | 69 => "dec8",
        4 | 80 => "cp850",
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => "latin1",
        6 | 72 => "hp8",
        7 | 74 => "koi8r",
        10 | 82 => "swe7",
        11 | 65 => "ascii",
        12 | 91 => "ujis",
        13 | 88 => "sjis",
        14 | 23 | 50 | 51 | 52 => "cp1251",
        16 | 71 => "hebrew",
        18 | 89 => "tis620",
        19 | 85 => "euckr",
        20 | 41 | 42 | 79 => "latin7",
        22 | 75 => "koi8u",
        24 | 86 => "gb2312",
        25 | 70 => "greek",
        26 | 34 | 44 | 66 | 99 => "cp1250",
        28 | 87 => "gbk",
        29 | 58 | 59 => "cp1257",
        30 | 78 => "latin5",
        32 | 64 => "armscii8",
        33 | 76 | 83 | 192..=215 | 223 => "utf8mb3",
        35 | 90 | 128..=151 | 159 => "ucs2",
        36 | 68 => "cp866",
        37 | 73 => "keybcs2",
        38 | 43 => "macce",
        39 | 53 => "macroman",
        40 | 81 => "cp852",
        45 | 46 | 224..=247 | 255..=323 => "utf8mb4",
        54 | 55 | 101..=124 => "utf16",
        56 | 62 => "utf16le",
        57 | 67 => "cp1256",
        60 | 61 | 160..=183 => "utf32",
        63 => "binary",
        92 | 93 => "geostd8",
        95 | 96 => "cp932",
        97 | 98 => "eucjpms",
        248..=250 => "gb18030",
        // MariaDB 10.10+ UCA-14.0.0 collations (utf8mb3 2048+, utf8mb4 2304+,
        // ucs2 2560+, utf16 2816+, utf32 3072+), 256 ids per charset.
        2048..=2303 => "utf8mb3",
        2304..=2559 => "utf8mb4",
        2560..=2815 => "ucs2",
        2816..=3071 => "utf16",
        3072..=3327 => "utf32",
        // MariaDB's extra UCA collations (e.g. utf8mb4_myanmar_ci), 32 ids per charset.
        576..=607 => "utf8mb3",
        608..=639 => "utf8mb4",
        640..=671 => "ucs2",
        672..=703 => "utf16",
        736..=767 => "utf32",
        _ => return None,
    })
}

/// The decoder for a charset name (as information_schema spells it).
pub fn charset_by_name(name: &str) -> Charset {
    let label = match name.to_ascii_lowercase().as_str() {
        "binary" => return Charset::Binary,
        "utf8" | "utf8mb3" | "utf8mb4" => return Charset::Utf8,
        "utf32" => return Charset::Utf32,
        // MySQL's latin1 is Windows-1252; so is its ascii for bytes < 0x80.
        "latin1" | "ascii" => "windows-1252",
        "latin2" => "iso-8859-2",
        "latin5" => "iso-8859-9",
        "latin7" => "iso-8859-13",
        "greek" => "iso-8859-7",
        "hebrew" => "iso-8859-8",
        "koi8r" => "koi8-r",
        "koi8u" => "koi8-u",
        "big5" => "big5",
        "ujis" | "eucjpms" => "euc-jp",
        "sjis" | "cp932" => "shift_jis",
        "euckr" => "euc-kr",
        "gb2312" | "gbk" => "gbk",
        "gb18030" => "gb18030",
        "tis620" => "windows-874",
        "cp1250" => "windows-1250",
        "cp1251" => "windows-1251",
        "cp1256" => "windows-1256",
        "cp1257" => "windows-1257",
        "cp866" => "ibm866",
        "macroman" => "macintosh",
        "ucs2" | "utf16" => "utf-16be",
        "utf16le" => "utf-16le",
        _ => return Charset::Unsupported,
    };
    Encoding::for_label(label.as_bytes()).map_or(Charset::Unsupported, Charset::Encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_collations() {
        assert_eq!(charset_name_of_collation(255), Some("utf8mb4"));
        assert_eq!(charset_name_of_collation(45), Some("utf8mb4"));
        assert_eq!(charset_name_of_collation(8), Some("latin1"));
        assert_eq!(charset_name_of_collation(63), Some("binary"));
        assert_eq!(charset_name_of_collation(35), Some("ucs2"));
        assert_eq!(charset_name_of_collation(1024 + 46), Some("utf8mb4"));
        assert_eq!(charset_name_of_collation(9999), None);
    }

    #[test]
    fn decoding() {
        let mut out = String::new();
        charset_by_name("latin1").decode_into(&[0x63, 0x61, 0x66, 0xe9, 0x80], &mut out);
        assert_eq!(out, "café€");
        out.clear();
        charset_by_name("ucs2").decode_into(&[0x00, 0x41, 0x04, 0x10], &mut out);
        assert_eq!(out, "AА");
        out.clear();
        charset_by_name("binary").decode_into(&[0x00, 0xff], &mut out);
        assert_eq!(out, "\u{0}\u{ff}");
        out.clear();
        charset_by_name("utf32").decode_into(&[0, 1, 0xf6, 0x00], &mut out);
        assert_eq!(out, "😀");
        assert_eq!(charset_by_name("utf8mb4").decode("😀".as_bytes()), "😀");
    }
}
