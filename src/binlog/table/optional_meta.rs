//! The TABLE_MAP event's optional metadata (binlog_row_metadata): checked
//! for counts that would make mysql_common allocate without bound, and read
//! for the per-type details the column list needs (ENUM/SET labels,
//! geometry types, vector dimensions).

use std::{borrow::Cow, io, vec};

use mysql_common::{
    binlog::events::{OptionalMetadataField, TableMapEvent},
    constants::GeometryType,
};

use super::WireType;
use crate::binlog::bytes::ByteReader;

/// ENUM/SET labels, geometry types and vector dimensions, in column order
/// within each type, handed out to the columns of that type one by one.
pub(super) struct TypeDetails {
    enums: vec::IntoIter<Vec<String>>,
    sets: vec::IntoIter<Vec<String>>,
    geometry: vec::IntoIter<GeometryType>,
    dimensions: vec::IntoIter<u64>,
}

impl TypeDetails {
    /// Reads the details from the table map's optional metadata.
    pub(super) fn read(tme: &TableMapEvent<'_>) -> io::Result<Self> {
        let mut enums = Vec::new();
        let mut sets = Vec::new();
        let mut geometry = Vec::new();
        let mut dimensions = Vec::new();
        for field in tme.iter_optional_meta() {
            match field? {
                OptionalMetadataField::EnumStrValue(values) => {
                    for column in values.iter_values() {
                        enums.push(owned_labels(column?.values().iter().map(|v| v.value())));
                    }
                }
                OptionalMetadataField::SetStrValue(values) => {
                    for column in values.iter_values() {
                        sets.push(owned_labels(column?.values().iter().map(|v| v.value())));
                    }
                }
                OptionalMetadataField::GeometryType(types) => {
                    for t in types.iter_geometry_types() {
                        geometry.push(t.unwrap_or(GeometryType::GEOM_GEOMETRY));
                    }
                }
                OptionalMetadataField::Dimensionality(dims) => {
                    for d in dims.iter_dimensionalities() {
                        dimensions.push(d?);
                    }
                }
                _ => {}
            }
        }
        Ok(TypeDetails {
            enums: enums.into_iter(),
            sets: sets.into_iter(),
            geometry: geometry.into_iter(),
            dimensions: dimensions.into_iter(),
        })
    }

    /// The labels of the next column, if it is an ENUM or a SET.
    pub(super) fn labels(&mut self, wire: WireType) -> Option<Vec<String>> {
        match wire {
            WireType::Enum { .. } => self.enums.next(),
            WireType::Set { .. } => self.sets.next(),
            _ => None,
        }
    }

    /// The geometry type of the next column, if it is a geometry.
    pub(super) fn geometry(&mut self, wire: WireType) -> Option<GeometryType> {
        match wire {
            WireType::Geometry { .. } => self.geometry.next(),
            _ => None,
        }
    }

    /// The dimension of the next column, if it is a vector.
    pub(super) fn dimension(&mut self, wire: WireType) -> Option<u64> {
        match wire {
            WireType::Vector { .. } => self.dimensions.next(),
            _ => None,
        }
    }
}

fn owned_labels<'a>(labels: impl Iterator<Item = Cow<'a, str>>) -> Vec<String> {
    labels.map(Cow::into_owned).collect()
}

/// Checks the counts inside a TABLE_MAP body that mysql_common would
/// allocate for before checking them (ENUM/SET label counts in the optional
/// metadata), so that a corrupt event is an error and not an allocation
/// failure.
pub fn check_table_map_body(data: &[u8]) -> Result<(), &'static str> {
    const SET_STR_VALUE: u8 = 5;
    const ENUM_STR_VALUE: u8 = 6;
    let truncated = "table map is truncated";
    let mut cursor = ByteReader::new(data);
    cursor.skip(6 + 2).ok_or(truncated)?;
    for _ in 0..2 {
        let len = usize::from(cursor.u8().ok_or(truncated)?);
        cursor.skip(len + 1).ok_or(truncated)?;
    }
    let columns = usize::try_from(cursor.lenenc_int().ok_or(truncated)?).map_err(|_| truncated)?;
    cursor.skip(columns).ok_or(truncated)?;
    let meta_len = usize::try_from(cursor.lenenc_int().ok_or(truncated)?).map_err(|_| truncated)?;
    cursor.skip(meta_len).ok_or(truncated)?;
    cursor.skip(columns.div_ceil(8)).ok_or(truncated)?;
    while !cursor.is_empty() {
        let kind = cursor.u8().ok_or(truncated)?;
        let len = usize::try_from(cursor.lenenc_int().ok_or(truncated)?).map_err(|_| truncated)?;
        let value = cursor
            .take(len)
            .ok_or("optional metadata field runs past the event")?;
        if kind == SET_STR_VALUE || kind == ENUM_STR_VALUE {
            check_label_counts(value)?;
        }
    }
    Ok(())
}

/// Every ENUM/SET label count fits in the field that holds the labels.
fn check_label_counts(value: &[u8]) -> Result<(), &'static str> {
    let truncated = "table map is truncated";
    let mut labels = ByteReader::new(value);
    while !labels.is_empty() {
        let count = labels.lenenc_int().ok_or(truncated)?;
        // Every label takes at least its one-byte length.
        if count > labels.remaining() as u64 {
            return Err("ENUM/SET label count exceeds the metadata size");
        }
        for _ in 0..count {
            let len =
                usize::try_from(labels.lenenc_int().ok_or(truncated)?).map_err(|_| truncated)?;
            labels.skip(len).ok_or(truncated)?;
        }
    }
    Ok(())
}
