//! SLA policy: the target of each clock, when to warn, when to escalate. Loaded from TOML;
//! the defaults are those of DESIGN.md.
//!
//! ```toml
//! warn_at_percent = 75
//! escalate_after = "24h"    # breach → level 2
//! escalate_then = ["48h"]   # level 2 → 3, 3 → 4…; the last repeats (default: escalate_after)
//!
//! [clocks.ack]
//! target = "24h"            # natural time: "24h", "90s", "1h 30m"
//! [clocks.feedback_reply]
//! working_days = 3          # working days, by the official calendar
//! [clocks.whistle_resolve]
//! enabled = true
//! working_days = 10
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::event::ClockKind;

/// Longest natural-time target or delay a policy may set.
pub const POLICY_DURATION_MAX: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("SLA policy: {0}")]
    Syntax(String),
    #[error("SLA policy, clock {clock}: {message}")]
    Invalid { clock: &'static str, message: String },
}

/// How long a clock runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Natural time, counted to the second.
    Natural(Duration),
    /// Working days, by the working-day calendar rule.
    WorkingDays(u32),
}

/// The policy of one clock kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockPolicy {
    pub enabled: bool,
    pub target: Target,
    /// Warn when this share of the clock has run, in percent (1..=99); `None` never warns.
    pub warn_at_percent: Option<u8>,
    /// Escalate to the next level when still overdue this long after the deadline.
    pub escalate_after: Option<Duration>,
}

/// The SLA policy of the whole service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaPolicy {
    clocks: BTreeMap<ClockKind, ClockPolicy>,
    /// The escalation ladder's highest level: the top supervisor level of the organisation.
    top_level: u8,
    /// Delays between further levels (level 2 → 3, 3 → 4…); the last repeats. Empty: each
    /// clock's `escalate_after`.
    escalate_then: Vec<Duration>,
}

/// The escalation ladder's top level when the organisation says nothing: 1 at the breach, 2 on
/// escalation.
pub const TOP_LEVEL_DEFAULT: u8 = 2;
/// Highest supervisor level an organisation may name.
pub const LEVEL_MAX: u8 = 9;

impl Default for SlaPolicy {
    fn default() -> Self {
        let escalate_after = Some(Duration::from_secs(24 * 3600));
        let on = |target| ClockPolicy { enabled: true, target, warn_at_percent: Some(75), escalate_after };
        let mut clocks = BTreeMap::new();
        clocks.insert(ClockKind::Ack, on(Target::Natural(Duration::from_secs(24 * 3600))));
        clocks.insert(ClockKind::Dispute, on(Target::WorkingDays(3)));
        clocks.insert(ClockKind::FeedbackReply, on(Target::WorkingDays(3)));
        clocks.insert(ClockKind::FeedbackResolve, on(Target::WorkingDays(7)));
        clocks.insert(ClockKind::WhistleResolve, ClockPolicy { enabled: false, ..on(Target::WorkingDays(10)) });
        SlaPolicy { clocks, top_level: TOP_LEVEL_DEFAULT, escalate_then: Vec::new() }
    }
}

impl SlaPolicy {
    pub fn clock(&self, kind: ClockKind) -> &ClockPolicy {
        self.clocks.get(&kind).expect("every clock kind has a policy (filled from defaults)")
    }

    /// The ladder up to `top` (the organisation's highest supervisor level, at least 2).
    pub fn with_top_level(mut self, top: u8) -> Self {
        self.top_level = top.clamp(TOP_LEVEL_DEFAULT, LEVEL_MAX);
        self
    }

    /// When each escalation above level 2 is due, for a clock of `kind` whose level-2
    /// escalation is at `level_two`: levels 3 to the top, in order.
    pub fn later_escalations(
        &self,
        kind: ClockKind,
        level_two: chrono::DateTime<chrono::Utc>,
    ) -> Vec<chrono::DateTime<chrono::Utc>> {
        let Some(first) = self.clock(kind).escalate_after else { return Vec::new() };
        let mut out = Vec::new();
        let mut at = level_two;
        for level in 3..=self.top_level {
            let step =
                self.escalate_then.get(usize::from(level - 3)).or(self.escalate_then.last()).copied().unwrap_or(first);
            let Some(next) = chrono::Duration::from_std(step).ok().and_then(|d| at.checked_add_signed(d)) else {
                break;
            };
            out.push(next);
            at = next;
        }
        out
    }

    /// Parses a policy file; what it leaves out keeps its default.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let mut policy = SlaPolicy::default();
        for kind in ClockKind::ALL {
            let clock = policy.clocks.get_mut(&kind).expect("defaults cover every kind");
            apply_globals(clock, &file);
            if let Some(entry) = file.clocks.get(kind.as_str()) {
                apply_entry(clock, entry, kind.as_str())?;
            }
        }
        if let Some(unknown) = file.clocks.keys().find(|k| !ClockKind::ALL.iter().any(|c| c.as_str() == *k)) {
            return Err(PolicyError::Syntax(format!(
                "unknown clock {unknown:?}; clocks are ack, dispute, feedback_reply, feedback_resolve, whistle_resolve"
            )));
        }
        if file.escalate_then.iter().any(|d| d.is_zero()) {
            return Err(PolicyError::Syntax("escalate_then: every step must be longer than zero".into()));
        }
        policy.escalate_then = file.escalate_then;
        Ok(policy)
    }
}

fn apply_globals(clock: &mut ClockPolicy, file: &PolicyFile) {
    if let Some(p) = file.warn_at_percent {
        clock.warn_at_percent = (p > 0).then_some(p);
    }
    if let Some(d) = file.escalate_after {
        clock.escalate_after = Some(d);
    }
}

fn apply_entry(clock: &mut ClockPolicy, entry: &ClockEntry, name: &'static str) -> Result<(), PolicyError> {
    let invalid = |message: &str| PolicyError::Invalid { clock: name, message: message.into() };
    clock.target = match (entry.target, entry.working_days) {
        (Some(_), Some(_)) => return Err(invalid("give either target or working_days, not both")),
        (Some(d), None) if d.is_zero() => return Err(invalid("target must be longer than zero")),
        (Some(d), None) => Target::Natural(d),
        (None, Some(0)) => return Err(invalid("working_days must be at least 1")),
        (None, Some(n)) if n > super::calendar::WORKING_DAYS_MAX => return Err(invalid("working_days is too large")),
        (None, Some(n)) => Target::WorkingDays(n),
        (None, None) => clock.target,
    };
    if let Some(enabled) = entry.enabled {
        clock.enabled = enabled;
    }
    if let Some(p) = entry.warn_at_percent {
        clock.warn_at_percent = (p > 0).then_some(p);
    }
    if let Some(d) = entry.escalate_after {
        clock.escalate_after = Some(d);
    }
    if entry.never_escalate == Some(true) {
        clock.escalate_after = None;
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default, deserialize_with = "percent")]
    warn_at_percent: Option<u8>,
    #[serde(default, deserialize_with = "duration")]
    escalate_after: Option<Duration>,
    #[serde(default, deserialize_with = "durations")]
    escalate_then: Vec<Duration>,
    #[serde(default)]
    clocks: BTreeMap<String, ClockEntry>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ClockEntry {
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "duration")]
    target: Option<Duration>,
    working_days: Option<u32>,
    #[serde(default, deserialize_with = "percent")]
    warn_at_percent: Option<u8>,
    #[serde(default, deserialize_with = "duration")]
    escalate_after: Option<Duration>,
    never_escalate: Option<bool>,
}

/// A duration such as "24h", "90s" or "1h 30m", at most [`POLICY_DURATION_MAX`].
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    let value = parse_duration(&text).map_err(serde::de::Error::custom)?;
    Ok(Some(value))
}

/// A list of durations ("48h", "72h").
fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts.iter().map(|t| parse_duration(t).map_err(serde::de::Error::custom)).collect()
}

/// Parses a human duration ("24h", "90s", "1h 30m").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let value = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"24h\" or \"90s\": {e}"))?;
    if value > POLICY_DURATION_MAX {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(value)
}

fn percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let value = u8::deserialize(d)?;
    if value > 99 {
        return Err(serde::de::Error::custom("warn_at_percent is 0 (never warn) to 99"));
    }
    Ok(Some(value))
}
