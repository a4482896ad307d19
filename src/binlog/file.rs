//! Reading binlog files from disk through the same event path as a live
//! stream: framing and size checks, CRC32 verification, TRANSACTION_PAYLOAD
//! unpacking. A truncated or damaged file ends with an error that names the
//! offset, never a panic or a silent stop.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, BufReader, Read},
    path::{Path, PathBuf},
    sync::Arc,
};

use mysql_common::binlog::{
    EventStreamReader,
    consts::{BinlogChecksumAlg, BinlogVersion, EventType},
    events::{Event, TransactionPayloadEvent},
};

use super::{
    event::{
        ChecksumError, EVENT_SIZE_OFFSET, HEADER_LEN, SourceEvent, event_type_name,
        minimum_event_size, verify_checksum,
    },
    guard::{ParseError, guarded},
};

/// Every binlog file starts with these bytes.
pub const MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// The largest decompressed TRANSACTION_PAYLOAD accepted (MySQL caps
/// transactions at `max_binlog_cache_size`; 1 GiB is far beyond practice and
/// keeps a corrupt size field from exhausting memory).
const MAX_PAYLOAD_BYTES: u64 = 1 << 30;

/// Why reading a binlog file failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be opened or read.
    #[error("cannot read binlog file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file lacks the binlog magic bytes.
    #[error("{path} is not a binlog file (it does not start with fe 62 69 6e)")]
    NotBinlog {
        /// The file.
        path: PathBuf,
    },
    /// The file ends inside an event.
    #[error("{path} is truncated at offset {offset}: {what}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the cut event starts.
        offset: u64,
        /// What was missing.
        what: String,
    },
    /// An event's framing or body does not parse.
    #[error("{path} has a malformed {event_type} event at offset {offset}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Where the event starts.
        offset: u64,
        /// The event's type name.
        event_type: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An event's checksum does not match its bytes.
    #[error("{path} has a damaged event at offset {offset}: {source}")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Where the event starts.
        offset: u64,
        /// The mismatch.
        source: ChecksumError,
    },
}

/// Iterates over the events of one binlog file (or of binlog bytes held in
/// memory, with [`BinlogFileReader::from_bytes`]).
pub struct BinlogFileReader<R = BufReader<File>> {
    path: PathBuf,
    journal: Arc<str>,
    input: R,
    len: u64,
    offset: u64,
    reader: EventStreamReader,
    checksums: bool,
    unpacked: VecDeque<SourceEvent>,
    buffer: Vec<u8>,
    failed: bool,
}

impl BinlogFileReader {
    /// Opens a binlog file and checks its magic bytes.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref().to_path_buf();
        let io_error = |source| FileError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        BinlogFileReader::from_reader(path, BufReader::with_capacity(1 << 20, file), len)
    }
}

impl BinlogFileReader<io::Cursor<Vec<u8>>> {
    /// Reads binlog bytes from memory; `name` plays the file name.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self, FileError> {
        let len = bytes.len() as u64;
        BinlogFileReader::from_reader(PathBuf::from(name), io::Cursor::new(bytes), len)
    }
}

impl<R: Read> BinlogFileReader<R> {
    /// Reads `len` bytes of binlog from `input`.
    pub fn from_reader(path: PathBuf, mut input: R, len: u64) -> Result<Self, FileError> {
        let mut magic = [0u8; 4];
        if len < 4 || input.read_exact(&mut magic).is_err() || magic != MAGIC {
            return Err(FileError::NotBinlog { path });
        }
        let journal: Arc<str> = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
            .into();
        Ok(BinlogFileReader {
            path,
            journal,
            input,
            len,
            offset: 4,
            reader: EventStreamReader::new(BinlogVersion::Version4),
            checksums: false,
            unpacked: VecDeque::new(),
            buffer: Vec::new(),
            failed: false,
        })
    }

    /// The journal name events of this file carry (its file name).
    pub fn journal(&self) -> &Arc<str> {
        &self.journal
    }

    fn malformed(&self, offset: u64, type_code: u8, reason: impl ToString) -> FileError {
        FileError::Malformed {
            path: self.path.clone(),
            offset,
            event_type: event_type_name(type_code),
            reason: reason.to_string(),
        }
    }

    fn read_next(&mut self) -> Result<Option<SourceEvent>, FileError> {
        if let Some(event) = self.unpacked.pop_front() {
            return Ok(Some(event));
        }
        let start = self.offset;
        if start == self.len {
            return Ok(None);
        }
        let header = self.read_header(start)?;
        let type_code = header[4];
        let size = u64::from(declared_size(&header));
        self.check_size(start, type_code, size)?;
        let event = self.read_body(start, &header, size)?;
        self.offset = start + size;
        verify_checksum(&event).map_err(|source| FileError::Checksum {
            path: self.path.clone(),
            offset: start,
            source,
        })?;
        if type_code == EventType::FORMAT_DESCRIPTION_EVENT as u8 {
            self.checksums = matches!(
                event.footer().get_checksum_alg(),
                Ok(Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32))
            );
        }
        let source_event = SourceEvent {
            event,
            journal: self.journal.clone(),
            start,
            end: self.offset,
            in_payload: false,
        };
        if type_code == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            self.unpack_payload(&source_event)?;
        }
        Ok(Some(source_event))
    }

    /// The common header of the event at `start`.
    fn read_header(&mut self, start: u64) -> Result<[u8; HEADER_LEN], FileError> {
        let remaining = self.len - start;
        if remaining < HEADER_LEN as u64 {
            return Err(FileError::Truncated {
                path: self.path.clone(),
                offset: start,
                what: format!("{remaining} bytes left, an event header needs {HEADER_LEN}"),
            });
        }
        let mut header = [0u8; HEADER_LEN];
        self.read_exact(&mut header, start)?;
        Ok(header)
    }

    /// Refuses a size no event of this type can have, or one past the end
    /// of the file, before anything is allocated for it.
    fn check_size(&self, start: u64, type_code: u8, size: u64) -> Result<(), FileError> {
        let minimum = minimum_event_size(type_code, self.checksums) as u64;
        if size < minimum {
            return Err(self.malformed(
                start,
                type_code,
                format!("size {size} is below the minimum {minimum}"),
            ));
        }
        let remaining = self.len - start;
        if size > remaining {
            return Err(FileError::Truncated {
                path: self.path.clone(),
                offset: start,
                what: format!(
                    "{} event claims {size} bytes but only {remaining} remain",
                    event_type_name(type_code)
                ),
            });
        }
        Ok(())
    }

    /// Reads the rest of the event after `header` into the reused buffer
    /// and parses it.
    fn read_body(
        &mut self,
        start: u64,
        header: &[u8; HEADER_LEN],
        size: u64,
    ) -> Result<Event, FileError> {
        let type_code = header[4];
        let mut raw = std::mem::take(&mut self.buffer);
        raw.clear();
        raw.extend_from_slice(header);
        raw.resize(size as usize, 0);
        if let Err(error) = self.read_exact(&mut raw[HEADER_LEN..], start) {
            self.buffer = raw;
            return Err(error);
        }
        let reader = &mut self.reader;
        let parsed = guarded(|| reader.read(raw.as_slice()));
        self.buffer = raw;
        parsed
            .map_err(|e| self.malformed(start, type_code, e))?
            .ok_or_else(|| self.malformed(start, type_code, "empty event"))
    }

    fn read_exact(&mut self, buf: &mut [u8], offset: u64) -> Result<(), FileError> {
        self.input
            .read_exact(buf)
            .map_err(|source| match source.kind() {
                io::ErrorKind::UnexpectedEof => FileError::Truncated {
                    path: self.path.clone(),
                    offset,
                    what: "the file ended while reading an event (is it still being written?)"
                        .into(),
                },
                _ => FileError::Io {
                    path: self.path.clone(),
                    source,
                },
            })
    }

    /// Decompresses a TRANSACTION_PAYLOAD and queues its events, each framed
    /// and size-checked before parsing.
    fn unpack_payload(&mut self, payload: &SourceEvent) -> Result<(), FileError> {
        let events = unpack_transaction_payload(&mut self.reader, payload)
            .map_err(|reason| self.malformed(payload.start, payload.type_code(), reason))?;
        self.unpacked.extend(events);
        Ok(())
    }
}

/// Why a TRANSACTION_PAYLOAD event could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The payload event itself did not parse.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The declared size is beyond any real transaction (a corrupt field).
    #[error("declares {declared} uncompressed bytes, over the {MAX_PAYLOAD_BYTES} limit")]
    TooLarge {
        /// The uncompressed size the event declares.
        declared: u64,
    },
    /// The compressed bytes are damaged.
    #[error("cannot decompress: {0}")]
    Decompress(#[source] io::Error),
    /// The decompressed bytes are not as many as declared.
    #[error("decompressed to {actual} bytes but declares {declared}")]
    SizeMismatch {
        /// The bytes decompression gave.
        actual: usize,
        /// The bytes the event declares.
        declared: u64,
    },
    /// Fewer bytes are left than an event header needs.
    #[error("inner event at payload byte {at} is truncated")]
    InnerTruncated {
        /// Where the inner event starts in the decompressed bytes.
        at: usize,
    },
    /// An inner event's size does not fit the payload.
    #[error("inner event at payload byte {at} claims {size} bytes")]
    InnerSize {
        /// Where the inner event starts in the decompressed bytes.
        at: usize,
        /// The size its header claims.
        size: usize,
    },
    /// An inner event did not parse.
    #[error("inner event at payload byte {at}: {source}")]
    Inner {
        /// Where the inner event starts in the decompressed bytes.
        at: usize,
        /// The parser's error.
        source: ParseError,
    },
    /// The parser found no event where one should be.
    #[error("inner event at payload byte {at} is empty")]
    InnerEmpty {
        /// Where the inner event starts in the decompressed bytes.
        at: usize,
    },
}

/// The `event_size` field of an event header (`header` holds at least
/// [`HEADER_LEN`] bytes).
fn declared_size(header: &[u8]) -> u32 {
    let field = &header[EVENT_SIZE_OFFSET..EVENT_SIZE_OFFSET + 4];
    u32::from_le_bytes([field[0], field[1], field[2], field[3]])
}

/// Decompresses a TRANSACTION_PAYLOAD event and parses the events inside it
/// with `reader` (which tracks table maps across them). The unpacked events
/// carry the payload's own position.
pub fn unpack_transaction_payload(
    reader: &mut EventStreamReader,
    payload: &SourceEvent,
) -> Result<Vec<SourceEvent>, PayloadError> {
    let bytes = decompress_payload(payload)?;
    let mut events = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < HEADER_LEN {
            return Err(PayloadError::InnerTruncated { at });
        }
        let size = declared_size(rest) as usize;
        if size < HEADER_LEN || size > rest.len() {
            return Err(PayloadError::InnerSize { at, size });
        }
        let event = guarded(|| reader.read_decompressed(&rest[..size]))
            .map_err(|source| PayloadError::Inner { at, source })?
            .ok_or(PayloadError::InnerEmpty { at })?;
        events.push(SourceEvent {
            event,
            journal: payload.journal.clone(),
            start: payload.start,
            end: payload.end,
            in_payload: true,
        });
        at += size;
    }
    Ok(events)
}

/// The decompressed bytes of a TRANSACTION_PAYLOAD, checked against the
/// size it declares.
fn decompress_payload(payload: &SourceEvent) -> Result<Vec<u8>, PayloadError> {
    let parsed = payload.parse::<TransactionPayloadEvent<'_>>()?;
    let declared = parsed.uncompressed_size();
    if declared > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge { declared });
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    parsed
        .decompressed()
        .map_err(PayloadError::Decompress)?
        .take(MAX_PAYLOAD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(PayloadError::Decompress)?;
    if bytes.len() as u64 != declared {
        return Err(PayloadError::SizeMismatch {
            actual: bytes.len(),
            declared,
        });
    }
    Ok(bytes)
}

impl<R: Read> Iterator for BinlogFileReader<R> {
    type Item = Result<SourceEvent, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.read_next() {
            Ok(event) => event.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}
