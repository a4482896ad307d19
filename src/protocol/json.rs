//! The protobuf JSON mapping of an [`Entry`](super::entry::Entry), with its
//! `storeValue` bytes replaced by the decoded message they carry
//! (`rowChange`, `transactionBegin` or `transactionEnd`), which is what people
//! want to read in `canal-server decode` output and `tail --json`.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use super::entry::{Entry, EntryType};

/// Why an entry could not be rendered as JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("entry storeValue is not a valid {message}: {source}")]
    /// The entry's `storeValue` did not decode.
    StoreValue {
        /// The message type expected there.
        message: &'static str,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// The entry does not fit the JSON shape; what was wrong.
    #[error("entry cannot be rendered as JSON: {0}")]
    Render(String),
}

struct Descriptors {
    entry: MessageDescriptor,
    row_change: MessageDescriptor,
    transaction_begin: MessageDescriptor,
    transaction_end: MessageDescriptor,
}

fn descriptors() -> &'static Descriptors {
    static DESCRIPTORS: OnceLock<Descriptors> = OnceLock::new();
    DESCRIPTORS.get_or_init(|| {
        // The descriptor set is produced by build.rs from our own .proto files,
        // so failing here is a build defect, not an input problem.
        let pool = DescriptorPool::decode(super::DESCRIPTOR_SET)
            .expect("descriptor set compiled by build.rs is valid");
        let get = |name: &str| {
            pool.get_message_by_name(name)
                .unwrap_or_else(|| panic!("{name} is defined in proto/entry.proto"))
        };
        Descriptors {
            entry: get("canal.entry.Entry"),
            row_change: get("canal.entry.RowChange"),
            transaction_begin: get("canal.entry.TransactionBegin"),
            transaction_end: get("canal.entry.TransactionEnd"),
        }
    })
}

fn to_json(message: &DynamicMessage) -> Result<Value, JsonError> {
    let options = SerializeOptions::new().skip_default_fields(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| JsonError::Render(e.to_string()))
}

fn decode_store_value(
    descriptor: &MessageDescriptor,
    message: &'static str,
    bytes: &[u8],
) -> Result<Value, JsonError> {
    let decoded = DynamicMessage::decode(descriptor.clone(), bytes)
        .map_err(|source| JsonError::StoreValue { message, source })?;
    to_json(&decoded)
}

/// Renders an entry as one JSON object (protobuf JSON mapping, defaults
/// omitted) with `storeValue` decoded into a field named after its message.
/// Entries of other types keep `storeValue` as base64, as the mapping says.
pub fn entry_to_json(entry: &Entry) -> Result<Value, JsonError> {
    let d = descriptors();
    let decoded = match entry.entry_type() {
        EntryType::Rowdata => Some((&d.row_change, "RowChange", "rowChange")),
        EntryType::Transactionbegin => {
            Some((&d.transaction_begin, "TransactionBegin", "transactionBegin"))
        }
        EntryType::Transactionend => Some((&d.transaction_end, "TransactionEnd", "transactionEnd")),
        _ => None,
    };
    let mut shown = entry.clone();
    let store_value = match decoded {
        Some(_) => std::mem::take(&mut shown.store_value),
        None => Vec::new(),
    };
    let dynamic = DynamicMessage::decode(d.entry.clone(), shown.encode_to_vec().as_slice())
        .map_err(|e| JsonError::Render(e.to_string()))?;
    let mut object = match to_json(&dynamic)? {
        Value::Object(object) => object,
        other => {
            return Err(JsonError::Render(format!(
                "expected an object, got {other}"
            )));
        }
    };
    if let Some((descriptor, message, key)) = decoded {
        let value = decode_store_value(descriptor, message, &store_value)?;
        object.insert(key.to_owned(), value);
    }
    Ok(Value::Object(object))
}
