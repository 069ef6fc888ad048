//! The views' on-disk key layout: every key the views and alert delivery store, how it is
//! built, and how its parts are read back (decoders return errors, never panic on short or
//! foreign bytes). Nothing else builds or takes apart a key.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `m:checkpoint` | | last applied log position (u64 BE) |
//! | `m:calendar:` | year (i32 BE) | a published `YearSchedule` (JSON) |
//! | `m:alerts:` | stage | alerts recorded of that stage (u64 BE) |
//! | `c:` | case id | `CaseView` |
//! | `i:` | fire time (ms, BE) ‖ case id ‖ clock | `IndexEntry`: the watchdog's deadline index |
//! | `l:u:` | unit ‖ 0 ‖ opening time ‖ case id | a case the unit takes part in |
//! | `l:s:` | kind ‖ 0 ‖ status ‖ 0 ‖ opening time ‖ case id | cases by kind and status (a kind's list, and the list of all cases, are these merged) |
//! | `l:o:` | opening time ‖ case id | an overdue case |
//! | `f:` | SHA-256 of a follow-up code (hex) ‖ 0 ‖ case id | the anonymous feedback the code follows up |
//! | `a:` | alert id | `AlertView` |
//! | `ao:` | alert id | an open (unacknowledged) alert |
//! | `t:` | dimension ‖ 0 ‖ unit ‖ 0 ‖ date | `StatsCell` |
//! | `d:` | position | `DeadLetter` |
//! | `m:format`, `m:armed`, `m:dead`, `m:open-alerts` | | layout version and counters (u64 BE), so metrics never scan |
//! | `delivery` tree: `sent:` | webhook ‖ 0 ‖ alert id | the alert went out on that webhook |
//! | `delivery` tree: `held:` | release time (ms, BE, sign-flipped) ‖ log position (BE) ‖ alert id ‖ webhook | a notice held for working hours |

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{IndexEntry, StatsDimension};

pub const CHECKPOINT_KEY: &[u8] = b"m:checkpoint";
pub const CALENDAR_PREFIX: &[u8] = b"m:calendar:";
/// Views layout version (u64 BE).
pub const FORMAT_KEY: &[u8] = b"m:format";
/// Clocks in the deadline index (u64 BE), kept as the index changes.
pub const ARMED_COUNT_KEY: &[u8] = b"m:armed";
/// Dead letters recorded (u64 BE).
pub const DEAD_LETTER_COUNT_KEY: &[u8] = b"m:dead";
/// Alerts not yet acknowledged (u64 BE).
pub const OPEN_ALERT_COUNT_KEY: &[u8] = b"m:open-alerts";
/// Evidence files attached, and their bytes, over the whole installation.
pub const FILES_COUNT_KEY: &[u8] = b"m:files";
pub const FILE_BYTES_KEY: &[u8] = b"m:file-bytes";

/// Marks a stored file (by its SHA-256, hex) as named by an event: the orphan sweeper keeps it.
pub fn attachment_key(sha256: &str) -> Vec<u8> {
    prefixed(b"x:", sha256.as_bytes())
}

pub fn case_key(case_id: Uuid) -> Vec<u8> {
    prefixed(b"c:", case_id.as_bytes())
}

pub fn calendar_key(year: i32) -> Vec<u8> {
    // Offset so that years sort by value in big-endian bytes.
    prefixed(CALENDAR_PREFIX, &((year as i64 + (1 << 31)) as u32).to_be_bytes())
}

pub(crate) fn index_time_key(millis: i64) -> Vec<u8> {
    // Flip the sign bit so negative times sort before positive ones.
    prefixed(b"i:", &((millis as u64) ^ (1 << 63)).to_be_bytes())
}

pub fn index_key(entry: &IndexEntry) -> Vec<u8> {
    [
        index_time_key(entry.fire_at.timestamp_millis()).as_slice(),
        entry.case_id.as_bytes(),
        entry.clock.to_string().as_bytes(),
    ]
    .concat()
}

/// The part of a list key that orders it: opening time (ms, BE, sign-flipped) and case id.
pub fn list_suffix(opened_at: DateTime<Utc>, case_id: Uuid) -> Vec<u8> {
    let millis = (opened_at.timestamp_millis() as u64) ^ (1 << 63);
    [millis.to_be_bytes().as_slice(), case_id.as_bytes()].concat()
}

/// The opening time a list suffix (see [`list_suffix`]) carries.
pub fn list_suffix_time(suffix: &[u8]) -> Option<DateTime<Utc>> {
    let millis = u64::from_be_bytes(suffix.get(..8)?.try_into().ok()?) ^ (1 << 63);
    DateTime::from_timestamp_millis(millis as i64)
}

pub fn unit_list_prefix(unit: &str) -> Vec<u8> {
    [b"l:u:".as_slice(), unit.as_bytes(), &[0]].concat()
}

/// Prefix of the status list of one status of a kind. A kind's cases, and all cases, are the
/// status lists under [`STATUS_LISTS_PREFIX`] and [`kind_lists_prefix`] merged at query time
/// (`Views::status_lists`), so that a case keeps no key for them.
pub fn status_list_prefix(kind: &str, status: &str) -> Vec<u8> {
    [kind_lists_prefix(kind).as_slice(), status.as_bytes(), &[0]].concat()
}

/// Every status list.
pub const STATUS_LISTS_PREFIX: &[u8] = b"l:s:";

/// The status lists of a kind.
pub fn kind_lists_prefix(kind: &str) -> Vec<u8> {
    [STATUS_LISTS_PREFIX, kind.as_bytes(), &[0]].concat()
}

/// The status list (its prefix, see [`status_list_prefix`]) a status-list key belongs to.
pub fn status_list_of(key: &[u8]) -> Result<Vec<u8>, String> {
    let rest = key.strip_prefix(STATUS_LISTS_PREFIX);
    let kind_end = rest.and_then(|r| r.iter().position(|b| *b == 0));
    let status_end = rest.zip(kind_end).and_then(|(r, k)| r[k + 1..].iter().position(|b| *b == 0).map(|s| k + 1 + s));
    match status_end {
        Some(end) => Ok(key[..STATUS_LISTS_PREFIX.len() + end + 1].to_vec()),
        None => Err(format!("not a status-list key: {}", String::from_utf8_lossy(key))),
    }
}

pub fn overdue_list_prefix() -> Vec<u8> {
    b"l:o:".to_vec()
}

/// The case id of a list key under `prefix` (see [`list_suffix`]).
pub fn list_key_case_id(prefix: &[u8], key: &[u8]) -> Result<Uuid, String> {
    key.strip_prefix(prefix).and_then(|suffix| suffix.get(8..24)).and_then(|b| Uuid::from_slice(b).ok()).ok_or_else(
        || format!("not a list key under {}: {}", String::from_utf8_lossy(prefix), String::from_utf8_lossy(key)),
    )
}

/// Every list key a case belongs to.
pub fn list_keys(
    kind: &str,
    status: &str,
    units: &[String],
    overdue: bool,
    opened_at: DateTime<Utc>,
    case_id: Uuid,
) -> Vec<Vec<u8>> {
    let suffix = list_suffix(opened_at, case_id);
    let mut prefixes = vec![status_list_prefix(kind, status)];
    prefixes.extend(units.iter().map(|u| unit_list_prefix(u)));
    if overdue {
        prefixes.push(overdue_list_prefix());
    }
    prefixes.into_iter().map(|p| [p.as_slice(), suffix.as_slice()].concat()).collect()
}

/// Prefix of the follow-up index entries of one code (its SHA-256, hex as the domain keeps it).
pub fn follow_up_prefix(code_sha256_hex: &str) -> Vec<u8> {
    [b"f:".as_slice(), code_sha256_hex.as_bytes(), &[0]].concat()
}

/// The follow-up index entry of an anonymous feedback item.
pub fn follow_up_key(code_sha256_hex: &str, case_id: Uuid) -> Vec<u8> {
    prefixed(&follow_up_prefix(code_sha256_hex), case_id.as_bytes())
}

pub fn alert_count_key(stage: crate::domain::event::AlertStage) -> Vec<u8> {
    prefixed(b"m:alerts:", stage.as_str().as_bytes())
}

pub fn alert_key(alert_id: Uuid) -> Vec<u8> {
    prefixed(b"a:", alert_id.as_bytes())
}

pub fn open_alert_key(alert_id: Uuid) -> Vec<u8> {
    prefixed(b"ao:", alert_id.as_bytes())
}

pub fn stats_key(dimension: StatsDimension, unit: &str, date: &str) -> Vec<u8> {
    [b"t:".as_slice(), dimension.as_str().as_bytes(), &[0], unit.as_bytes(), &[0], date.as_bytes()].concat()
}

pub fn dead_letter_key(position: u64) -> Vec<u8> {
    prefixed(b"d:", &position.to_be_bytes())
}

pub(crate) fn prefixed(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    [prefix, rest].concat()
}

/// The prefix a key is kept under, for reports: up to its first `:`, or its second for
/// the list keys (`l:u:`, `l:s:`…); `m:` keys are reported whole.
pub fn key_prefix(key: &[u8]) -> String {
    let colons: Vec<usize> = key.iter().enumerate().filter(|(_, b)| **b == b':').map(|(i, _)| i).take(2).collect();
    let end = match (key.first(), colons.as_slice()) {
        (Some(b'm'), [_, second, ..]) => *second + 1,
        (Some(b'm'), _) => key.len(),
        (Some(b'l'), [_, second, ..]) => *second + 1,
        (_, [first, ..]) => *first + 1,
        _ => key.len(),
    };
    String::from_utf8_lossy(&key[..end]).into_owned()
}

/// The first key after every key that starts with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

/// A u64 stored big-endian; anything but exactly 8 bytes is an error.
pub fn u64_from(bytes: &[u8]) -> Result<u64, String> {
    let b: [u8; 8] = bytes.try_into().map_err(|_| format!("expected 8 bytes, found {}", bytes.len()))?;
    Ok(u64::from_be_bytes(b))
}

/// Alert delivery: the alert went out on this webhook.
pub fn sent_key(webhook: &str, alert_id: Uuid) -> Vec<u8> {
    [b"sent:".as_slice(), webhook.as_bytes(), &[0], alert_id.as_bytes()].concat()
}

pub const HELD_PREFIX: &[u8] = b"held:";

/// Alert delivery: a notice held until `release`; keys sort by release time, then by the log
/// position of what the notice is about, so held notices go out in the order things happened.
pub fn held_key(release: DateTime<Utc>, position: u64, alert_id: Uuid, webhook: &str) -> Vec<u8> {
    let millis = (release.timestamp_millis() as u64) ^ (1 << 63);
    [HELD_PREFIX, &millis.to_be_bytes(), &position.to_be_bytes(), alert_id.as_bytes(), webhook.as_bytes()].concat()
}

/// The release time of a held-notice key.
pub fn held_release(key: &[u8]) -> Result<DateTime<Utc>, String> {
    let time = key
        .strip_prefix(HELD_PREFIX)
        .and_then(|rest| rest.get(..8))
        .ok_or_else(|| format!("not a held-notice key: {}", String::from_utf8_lossy(key)))?;
    let millis = (u64_from(time)? ^ (1 << 63)) as i64;
    DateTime::from_timestamp_millis(millis).ok_or_else(|| format!("held-notice key has an impossible time {millis}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_refuse_short_and_foreign_bytes_instead_of_panicking() {
        assert!(u64_from(&[1, 2, 3]).is_err());
        assert!(u64_from(&[0; 9]).is_err());
        assert_eq!(u64_from(&7u64.to_be_bytes()), Ok(7));
        assert!(held_release(b"held:abc").is_err());
        assert!(held_release(b"sent:12345678").is_err());
        let at = DateTime::from_timestamp_millis(1_790_000_000_000).expect("a valid time");
        assert_eq!(held_release(&held_key(at, 7, Uuid::nil(), "wecom")), Ok(at));
        assert!(held_key(at, 7, Uuid::max(), "wecom") < held_key(at, 8, Uuid::nil(), "wecom"), "in log order");
        let id = Uuid::from_u128(7);
        let prefix = status_list_prefix("whistle", "open");
        let key = [prefix.as_slice(), &list_suffix(at, id)].concat();
        assert_eq!(list_key_case_id(&prefix, &key), Ok(id));
        assert!(list_key_case_id(&prefix, &key[..key.len() - 1]).is_err());
        assert!(list_key_case_id(b"l:o:", &key).is_err());
        assert_eq!(status_list_of(&key), Ok(prefix));
        assert!(status_list_of(b"l:s:whistle\0open").is_err());
        assert!(status_list_of(b"l:u:whistle\0open\0").is_err());
    }
}
