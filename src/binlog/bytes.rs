//! A bounds-checked reader over event bytes. Every read that would run past
//! the end returns `None`, so malformed input becomes an error at the call
//! site instead of a panic.

/// A read position in a byte slice.
#[derive(Debug, Clone)]
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> ByteReader<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteReader { bytes, offset: 0 }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes left, without reading them.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.offset..]
    }

    /// Reads the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.offset.checked_add(n)?;
        let slice = self.bytes.get(self.offset..end)?;
        self.offset = end;
        Some(slice)
    }

    /// Passes over the next `n` bytes.
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    /// Little-endian unsigned integer of `n` (1..=8) bytes.
    pub fn uint_le(&mut self, n: usize) -> Option<u64> {
        let bytes = self.take(n)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    }

    /// Big-endian unsigned integer of `n` (1..=8) bytes.
    pub fn uint_be(&mut self, n: usize) -> Option<u64> {
        let bytes = self.take(n)?;
        Some(bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Reads a little-endian u16.
    pub fn u16_le(&mut self) -> Option<u16> {
        self.uint_le(2).map(|v| v as u16)
    }

    /// Reads a little-endian u32.
    pub fn u32_le(&mut self) -> Option<u32> {
        self.uint_le(4).map(|v| v as u32)
    }

    /// Reads a little-endian u64.
    pub fn u64_le(&mut self) -> Option<u64> {
        self.uint_le(8)
    }

    /// MySQL length-encoded integer.
    pub fn lenenc_int(&mut self) -> Option<u64> {
        match self.u8()? {
            n @ 0..=0xfa => Some(u64::from(n)),
            0xfc => self.uint_le(2),
            0xfd => self.uint_le(3),
            0xfe => self.uint_le(8),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let mut c = ByteReader::new(&[1, 2, 3]);
        assert_eq!(c.uint_le(2), Some(0x0201));
        assert_eq!(c.uint_be(2), None);
        assert_eq!(c.u8(), Some(3));
        assert!(c.is_empty());
        assert_eq!(c.take(usize::MAX), None);
    }

    #[test]
    fn lenenc() {
        assert_eq!(ByteReader::new(&[0xfa]).lenenc_int(), Some(250));
        assert_eq!(ByteReader::new(&[0xfc, 0x01, 0x01]).lenenc_int(), Some(257));
        assert_eq!(ByteReader::new(&[0xfb]).lenenc_int(), None);
        assert_eq!(ByteReader::new(&[0xfe, 1]).lenenc_int(), None);
    }
}
