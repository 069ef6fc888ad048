//! Evidence files: which kinds are taken, told from their bytes (never from the name or what
//! the sender says), and the limits every installation keeps. Files are always optional: the
//! 留痕负面清单 forbids asking for photos as proof of work.

/// Most files a case may ever carry, whatever the configuration says (it may say fewer).
pub const ATTACHMENTS_PER_CASE_MAX: usize = 50;
/// Longest file name kept, in characters.
pub const ATTACHMENT_NAME_CHARS_MAX: usize = 120;

/// The kinds taken: images (shown inline), PDF and Office documents (downloaded).
pub const ATTACHMENT_TYPES: [&str; 10] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/x-ole-storage",
];

/// Whether a kind is shown inline (an image) rather than downloaded.
pub fn is_image(content_type: &str) -> bool {
    content_type.starts_with("image/")
}

/// The kind of a file from its first bytes; `None`: not a kind this service takes.
pub fn detect(bytes: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some("image/gif");
    }
    if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return Some("image/webp");
    }
    // ISO base media: `ftyp` at 4, then a HEIF brand (what phone cameras write).
    if bytes.get(4..8) == Some(b"ftyp") {
        let brand = bytes.get(8..12)?;
        return matches!(brand, b"heic" | b"heix" | b"heim" | b"heis" | b"mif1" | b"msf1").then_some("image/heic");
    }
    if starts(b"%PDF-") {
        return Some("application/pdf");
    }
    // Office Open XML: a ZIP whose entries name the document's part folder.
    if starts(b"PK\x03\x04") {
        let head = &bytes[..bytes.len().min(64 * 1024)];
        let has = |name: &[u8]| head.windows(name.len()).any(|w| w == name);
        if !has(b"[Content_Types].xml") {
            return None;
        }
        return if has(b"word/") {
            Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        } else if has(b"xl/") {
            Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        } else if has(b"ppt/") {
            Some("application/vnd.openxmlformats-officedocument.presentationml.presentation")
        } else {
            None
        };
    }
    // The older Word, Excel and PowerPoint files: an OLE2 compound file.
    if starts(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Some("application/x-ole-storage");
    }
    None
}

/// A file name as kept: its last path part, control characters dropped, trimmed, at most
/// [`ATTACHMENT_NAME_CHARS_MAX`] characters (keeping the extension); `None` when nothing is left.
pub fn clean_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return None;
    }
    let count = cleaned.chars().count();
    if count <= ATTACHMENT_NAME_CHARS_MAX {
        return Some(cleaned.to_owned());
    }
    let ext: String = match cleaned.rfind('.') {
        Some(i) if cleaned.len() - i <= 10 => cleaned[i..].to_owned(),
        _ => String::new(),
    };
    let keep = ATTACHMENT_NAME_CHARS_MAX - ext.chars().count();
    Some(cleaned.chars().take(keep).collect::<String>() + &ext)
}

/// The SHA-256 of `bytes`, as lowercase hex (how this service names files and stores hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a text is a SHA-256 as this service writes it: 64 lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_from_the_bytes() {
        assert_eq!(detect(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"), Some("image/jpeg"));
        assert_eq!(detect(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some("image/png"));
        assert_eq!(detect(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(detect(b"\0\0\0\x18ftypheic\0\0\0\0"), Some("image/heic"));
        assert_eq!(detect(b"\0\0\0\x18ftypisom\0\0\0\0"), None, "an MP4 video is not taken");
        assert_eq!(detect(b"%PDF-1.7\n"), Some("application/pdf"));
        let docx = b"PK\x03\x04....[Content_Types].xml....word/document.xml";
        assert_eq!(detect(docx), Some(ATTACHMENT_TYPES[6]));
        assert_eq!(detect(b"PK\x03\x04....some.txt"), None, "a plain ZIP is not taken");
        assert_eq!(detect(b"MZ\x90\0"), None, "a program is not taken");
        assert_eq!(detect(b"<html><script>"), None);
        assert_eq!(detect(b""), None);
        assert!(ATTACHMENT_TYPES.iter().all(|t| !t.is_empty()));
    }

    #[test]
    fn names_lose_paths_and_control_characters_and_keep_their_extension() {
        assert_eq!(clean_name("C:\\照片\\河道.jpg").as_deref(), Some("河道.jpg"));
        assert_eq!(clean_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(clean_name("a\nb.pdf").as_deref(), Some("ab.pdf"));
        assert_eq!(clean_name("  "), None);
        assert_eq!(clean_name(".."), None);
        let long = format!("{}.jpg", "河".repeat(300));
        let kept = clean_name(&long).unwrap();
        assert_eq!(kept.chars().count(), ATTACHMENT_NAME_CHARS_MAX);
        assert!(kept.ends_with(".jpg"));
    }
}
