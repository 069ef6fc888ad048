//! The one codec for view values: JSON, compressed with zstd against a dictionary built into
//! the binary, behind a tag byte.
//!
//! | first byte | value |
//! |---|---|
//! | `0x01` | length of the JSON (u32 LE), then a zstd frame compressed with [`DICTIONARY`] |
//! | anything else | plain JSON (values too small to gain from compression) |
//!
//! JSON never starts with `0x01`, so the tag cannot be mistaken. A case view of ~1.4 kB of JSON
//! takes ~220 bytes; the dictionary is what makes small values compress (zstd alone halves
//! them). Encoding is deterministic — the same value, the same bytes — so a rebuild writes
//! exactly what live projection wrote.
//!
//! The dictionary was trained with `whistle views-dictionary` on the views of
//! `whistle sim --events 200000` (field names, timestamps, unit names and the shape of every
//! view kind); changing it changes the bytes of every view, so it goes with a new
//! [`super::views::VIEWS_FORMAT`].

use std::cell::RefCell;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The tag of a value compressed with [`DICTIONARY`].
pub const TAG_ZSTD_DICTIONARY_1: u8 = 1;

/// zstd dictionary for view values (see the module documentation).
pub static DICTIONARY: &[u8] = include_bytes!("views.dict");

/// Values shorter than this stay plain JSON.
const COMPRESS_FROM_BYTES: usize = 48;

/// zstd level: 3 compresses case views ~10 % better than 1 for ~20 % more time.
const LEVEL: i32 = 3;

/// The largest JSON a compressed value may claim to hold (a damaged length must not allocate
/// gigabytes).
const JSON_BYTES_MAX: usize = 64 * 1024 * 1024;

fn encoder_dictionary() -> &'static zstd::dict::EncoderDictionary<'static> {
    static DICT: OnceLock<zstd::dict::EncoderDictionary<'static>> = OnceLock::new();
    DICT.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICTIONARY, LEVEL))
}

fn decoder_dictionary() -> &'static zstd::dict::DecoderDictionary<'static> {
    static DICT: OnceLock<zstd::dict::DecoderDictionary<'static>> = OnceLock::new();
    DICT.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICTIONARY))
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Encodes a view value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("view values serialise (plain data)");
    compress(json)
}

/// Compresses JSON bytes into a view value (small ones stay as they are).
pub fn compress(json: Vec<u8>) -> Vec<u8> {
    if json.len() < COMPRESS_FROM_BYTES {
        return json;
    }
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = slot.get_or_insert_with(|| {
            let mut c = zstd::bulk::Compressor::with_prepared_dictionary(encoder_dictionary())
                .expect("a zstd context (only fails when out of memory)");
            // sled checksums its pages, and the tag names the dictionary.
            c.include_checksum(false).expect("a known zstd parameter");
            c.include_dictid(false).expect("a known zstd parameter");
            c.include_contentsize(false).expect("a known zstd parameter");
            c
        });
        let mut out = Vec::with_capacity(5 + json.len() / 2);
        out.push(TAG_ZSTD_DICTIONARY_1);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        let frame = compressor.compress(&json).expect("zstd compresses any input into a growing buffer");
        out.extend_from_slice(&frame);
        out
    })
}

/// The JSON bytes of a view value.
pub fn json_bytes(value: &[u8]) -> Result<Vec<u8>, String> {
    let Some((&TAG_ZSTD_DICTIONARY_1, rest)) = value.split_first() else { return Ok(value.to_vec()) };
    let (len, frame) = rest.split_at_checked(4).ok_or("a compressed view value shorter than its header")?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > JSON_BYTES_MAX {
        return Err(format!("a compressed view value claims {len} bytes"));
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let decompressor = match &mut *slot {
            Some(d) => d,
            None => slot.insert(
                zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dictionary())
                    .map_err(|e| format!("zstd context: {e}"))?,
            ),
        };
        let mut out = Vec::with_capacity(len);
        let written = decompressor
            .decompress_to_buffer(frame, &mut out)
            .map_err(|e| format!("a compressed view value does not decompress: {e}"))?;
        if written != len {
            return Err(format!("a compressed view value holds {written} bytes, its header says {len}"));
        }
        Ok(out)
    })
}

/// Decodes a view value.
pub fn decode<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    if value.first() == Some(&TAG_ZSTD_DICTIONARY_1) {
        serde_json::from_slice(&json_bytes(value)?).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }
}

/// Trains a dictionary from sample values (any mix of encoded and plain JSON), at most
/// `max_bytes` long.
pub fn train_dictionary(samples: &[Vec<u8>], max_bytes: usize) -> Result<Vec<u8>, String> {
    let json: Vec<Vec<u8>> = samples.iter().map(|v| json_bytes(v)).collect::<Result<_, _>>()?;
    zstd::dict::from_samples(&json, max_bytes).map_err(|e| format!("zstd could not train a dictionary: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_small_ones_stay_plain_json() {
        let small = serde_json::json!({"a": 1});
        assert_eq!(encode(&small), serde_json::to_vec(&small).unwrap());
        let large = serde_json::json!({"title": "河道问题协调".repeat(20), "departments": ["城管局", "水务局"]});
        let encoded = encode(&large);
        assert_eq!(encoded[0], TAG_ZSTD_DICTIONARY_1);
        assert!(encoded.len() < serde_json::to_vec(&large).unwrap().len() / 2, "{} bytes", encoded.len());
        assert_eq!(decode::<serde_json::Value>(&encoded), Ok(large.clone()));
        assert_eq!(encode(&large), encoded, "encoding is deterministic");
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let large = serde_json::json!({"title": "河道问题协调".repeat(20)});
        let encoded = encode(&large);
        assert!(decode::<serde_json::Value>(&encoded[..3]).is_err());
        assert!(decode::<serde_json::Value>(&encoded[..encoded.len() - 2]).is_err());
        let mut lying = encoded.clone();
        lying[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<serde_json::Value>(&lying).is_err());
        let mut flipped = encoded;
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(decode::<serde_json::Value>(&flipped).is_err());
    }
}
