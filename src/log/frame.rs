//! Checksummed frames: the unit the embedded log's files are made of.
//!
//! A file starts with an 8-byte magic naming what it holds, then frames:
//! `body length (u32 LE) ‖ CRC-32 of the body (u32 LE) ‖ body`.
//!
//! Reading a file back tells three endings apart:
//! - clean: the last frame ends at the end of the file;
//! - a torn tail: the last frame runs past the end of the file, or everything from a bad frame
//!   to the end is zeros (a write the system crashed in; it was never acknowledged, because an
//!   append is answered only after the sync that covers it);
//! - damage: a frame fails its checksum or its length is impossible, and the file goes on after
//!   it. Nothing after a damaged frame can be trusted; the reader stops and says where.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;

/// Bytes before each frame's body.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of a file's magic.
pub const MAGIC_BYTES: usize = 8;

/// Appends one frame holding `body` to `out`.
pub fn encode(body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).expect("frame bodies are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// Where a file stops being usable, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first unusable frame.
    pub offset: u64,
    /// How many good frames come before it.
    pub frames_before: u64,
    pub reason: String,
}

/// How a scan of a whole file ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every byte belongs to a good frame.
    Clean { end: u64 },
    /// Good frames end at `end`; the `bytes` after it are a write that never completed.
    TornTail { end: u64, bytes: u64 },
}

impl Ending {
    /// Where the good frames end.
    pub fn end(&self) -> u64 {
        match self {
            Ending::Clean { end } | Ending::TornTail { end, .. } => *end,
        }
    }
}

/// Reads every frame of `file` after its magic, in order, handing each body and its offset to
/// `visit`, which may itself call a frame damaged. Stops at the first damage.
pub fn scan(
    file: &File,
    magic: &[u8; MAGIC_BYTES],
    body_bytes_max: usize,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<Ending, Damage> {
    let file_len = file.metadata().map_err(|e| damage(0, 0, format!("cannot read the file's size: {e}")))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut found = [0u8; MAGIC_BYTES];
    reader.read_exact(&mut found).map_err(|e| damage(0, 0, format!("cannot read the file's magic: {e}")))?;
    if &found != magic {
        return Err(damage(0, 0, format!("not a whistle log file (magic {:?})", String::from_utf8_lossy(&found))));
    }
    let mut offset = MAGIC_BYTES as u64;
    let mut frames = 0u64;
    let mut body = Vec::new();
    while offset < file_len {
        let left = file_len - offset;
        let mut header = [0u8; FRAME_HEADER_BYTES];
        if left < FRAME_HEADER_BYTES as u64 {
            return Ok(Ending::TornTail { end: offset, bytes: left });
        }
        reader.read_exact(&mut header).map_err(|e| damage(offset, frames, format!("read failed: {e}")))?;
        let (len, crc) = header_fields(&header);
        let frame_end = offset + (FRAME_HEADER_BYTES + len) as u64;
        let problem = if len == 0 || len > body_bytes_max {
            Some(format!("impossible frame length {len}"))
        } else if frame_end > file_len {
            return Ok(Ending::TornTail { end: offset, bytes: left });
        } else {
            body.resize(len, 0);
            reader.read_exact(&mut body).map_err(|e| damage(offset, frames, format!("read failed: {e}")))?;
            if crc32fast::hash(&body) != crc {
                Some("checksum mismatch".to_owned())
            } else {
                visit(offset, &body).err()
            }
        };
        if let Some(reason) = problem {
            if zeros_to_end(file, offset, file_len) {
                return Ok(Ending::TornTail { end: offset, bytes: left });
            }
            return Err(damage(offset, frames, reason));
        }
        offset = frame_end;
        frames += 1;
    }
    Ok(Ending::Clean { end: offset })
}

/// Reads the frame at `offset` and checks it: the body, or why it cannot be used.
pub fn read_at(file: &File, offset: u64, body_bytes_max: usize) -> Result<Vec<u8>, String> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    file.read_exact_at(&mut header, offset).map_err(|e| format!("read failed: {e}"))?;
    let (len, crc) = header_fields(&header);
    if len == 0 || len > body_bytes_max {
        return Err(format!("impossible frame length {len}"));
    }
    let mut body = vec![0u8; len];
    file.read_exact_at(&mut body, offset + FRAME_HEADER_BYTES as u64).map_err(|e| format!("read failed: {e}"))?;
    if crc32fast::hash(&body) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

/// A frame header's body length and checksum.
fn header_fields(header: &[u8; FRAME_HEADER_BYTES]) -> (usize, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    (len, u32::from_le_bytes([header[4], header[5], header[6], header[7]]))
}

fn damage(offset: u64, frames_before: u64, reason: String) -> Damage {
    Damage { offset, frames_before, reason }
}

/// True when every byte of `file` from `from` to `to` is zero (or cannot be read as anything
/// else): the shape a file takes when its size reached the disk before its data did.
fn zeros_to_end(file: &File, from: u64, to: u64) -> bool {
    let mut offset = from;
    let mut chunk = vec![0u8; 64 * 1024];
    while offset < to {
        let n = ((to - offset) as usize).min(chunk.len());
        if file.read_exact_at(&mut chunk[..n], offset).is_err() {
            return false;
        }
        if chunk[..n].iter().any(|b| *b != 0) {
            return false;
        }
        offset += n as u64;
    }
    true
}

/// A little-endian cursor over a frame body, whose reads fail instead of panicking.
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("body ends early: wanted {n} more bytes, {} left", self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("take(8) returns 8 bytes")))
    }

    pub fn uuid(&mut self) -> Result<uuid::Uuid, String> {
        let b = self.take(16)?;
        Ok(uuid::Uuid::from_bytes(b.try_into().expect("take(16) returns 16 bytes")))
    }

    /// A string with a u16 length before it.
    pub fn short_str(&mut self) -> Result<&'a str, String> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
        std::str::from_utf8(self.take(len)?).map_err(|_| "a text field is not UTF-8".to_owned())
    }

    pub fn rest(self) -> &'a [u8] {
        self.rest
    }
}

/// Appends a string with a u16 length before it.
pub fn put_short_str(out: &mut Vec<u8>, s: &str) -> Result<(), String> {
    let len = u16::try_from(s.len()).map_err(|_| format!("a text field of {} bytes is longer than 65535", s.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}
