//! Who is calling: the organisation (units and supervisors), bearer tokens stored only as
//! SHA-256 hashes, and the scope rules of DESIGN.md ("Who may do what").

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::event::{Actor, Role};
use crate::domain::state::State;

/// The organisation the service runs for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    pub townships: Vec<String>,
    pub departments: Vec<String>,
    /// The burden-reduction office (减负办).
    pub office: String,
    /// Who settles responsibility disputes (e.g. the staffing office, 编办).
    pub coordinator: String,
    pub supervisors: Vec<Supervisor>,
    /// Where alerts go besides the live stream and the alert subjects.
    #[serde(default, skip_serializing_if = "is_default_alerts")]
    pub alerts: crate::alerts::AlertConfig,
    /// When the 三率 通报 is published.
    #[serde(default)]
    pub reports: crate::reports::ReportSchedule,
    /// Rules for duplicates and hand-overs.
    #[serde(default, skip_serializing_if = "is_default_rules")]
    pub cases: CaseRules,
}

fn is_default_rules(r: &CaseRules) -> bool {
    *r == CaseRules::default()
}

/// org.toml `[cases]`: how possible duplicates are found, who decides hand-overs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaseRules {
    /// How far back possible duplicates are looked for, in days (opening time).
    pub duplicate_window_days: u32,
    /// How alike (character-bigram Jaccard, 0 to 1) two reports must be to be suggested.
    pub duplicate_threshold: f64,
    /// Whether the raising township may accept or refuse hand-overs, besides the coordinator.
    pub township_decides_hand_overs: bool,
}

impl Default for CaseRules {
    fn default() -> Self {
        CaseRules { duplicate_window_days: 30, duplicate_threshold: 0.4, township_decides_hand_overs: false }
    }
}

fn is_default_alerts(a: &crate::alerts::AlertConfig) -> bool {
    *a == crate::alerts::AlertConfig::default()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervisor {
    pub unit: String,
    /// 1: first level (told of warnings and breaches); 2 and above: told of escalations too.
    pub level: u8,
}

impl Org {
    /// The demo organisation written on first start.
    pub fn demo() -> Self {
        Org {
            townships: vec!["东坝镇".into(), "西湖街道".into()],
            departments: vec!["住建局".into(), "城管局".into(), "生态环境局".into(), "交通局".into()],
            office: "市减负办".into(),
            coordinator: "市委编办".into(),
            supervisors: vec![
                Supervisor { unit: "区委督查室".into(), level: 1 },
                Supervisor { unit: "市委督查室".into(), level: 2 },
            ],
            alerts: crate::alerts::AlertConfig::default(),
            reports: crate::reports::ReportSchedule::default(),
            cases: CaseRules::default(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let org: Org = toml::from_str(text).map_err(|e| e.to_string())?;
        if org.townships.is_empty() || org.departments.is_empty() {
            return Err("an organisation needs at least one township and one department".into());
        }
        org.check_webhooks()?;
        let rules = &org.cases;
        if !(1..=366).contains(&rules.duplicate_window_days) {
            return Err("[cases] duplicate_window_days is 1 to 366".into());
        }
        if !(rules.duplicate_threshold > 0.0 && rules.duplicate_threshold <= 1.0) {
            return Err("[cases] duplicate_threshold is above 0 and at most 1".into());
        }
        Ok(org)
    }

    /// Every unit a message may be for: the organisation's units, `supervisors` (通报,
    /// extension requests) and `log` (operator notices).
    fn message_units(&self) -> Vec<String> {
        let mut units: Vec<String> = self.townships.iter().chain(&self.departments).cloned().collect();
        units.extend([self.office.clone(), self.coordinator.clone(), "supervisors".into(), "log".into()]);
        units
    }

    /// A webhook naming a stage or unit that does not exist would silently never send.
    fn check_webhooks(&self) -> Result<(), String> {
        let units = self.message_units();
        let mut names = std::collections::BTreeSet::new();
        for w in &self.alerts.webhooks {
            if !names.insert(&w.name) {
                return Err(format!("two webhooks are named {:?}: each needs its own name", w.name));
            }
            if let Some(stage) = w.stages.iter().find(|s| !crate::alerts::message_kinds().any(|k| k == s.as_str())) {
                let kinds: Vec<&str> = crate::alerts::message_kinds().collect();
                return Err(format!(
                    "webhook {:?}: no message is of kind {stage:?} (kinds: {})",
                    w.name,
                    kinds.join(", ")
                ));
            }
            if let Some(unit) = w.units.iter().find(|u| !units.contains(u)) {
                return Err(format!("webhook {:?}: {unit:?} is not a unit of this organisation", w.name));
            }
        }
        Ok(())
    }

    /// Who is told what: each group (webhook) with the units and kinds it takes, then each
    /// unit whose own notices (a summons, a report-in…) reach no group.
    pub fn routing(&self) -> String {
        let mut out = String::new();
        for w in &self.alerts.webhooks {
            let kinds: Vec<&str> = crate::alerts::message_kinds().filter(|k| w.wants_kind(k)).collect();
            let units = if w.units.is_empty() { "every unit".to_owned() } else { w.units.join(", ") };
            out.push_str(&format!("{} ({:?}): {} — for {units}\n", w.name, w.format, kinds.join(", ")));
        }
        for unit in self.message_units().into_iter().filter(|u| u != "log") {
            let reached = self.alerts.webhooks.iter().any(|w| {
                (w.units.is_empty() || w.units.contains(&unit))
                    && crate::alerts::notice::UNIT_NOTICE_KINDS.iter().any(|k| w.wants_kind(k))
            });
            if !reached {
                out.push_str(&format!("{unit}: no group takes its notices; it is told on the dashboard only\n"));
            }
        }
        out
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("an org serialises (plain data)")
    }

    /// Whether `actor` names a unit of this organisation in that role.
    pub fn knows(&self, actor: &Actor) -> bool {
        match actor.role {
            Role::Township => self.townships.contains(&actor.unit),
            Role::Department => self.departments.contains(&actor.unit),
            Role::Office => self.office == actor.unit,
            Role::Coordinator => self.coordinator == actor.unit,
            Role::Supervisor => self.supervisors.iter().any(|s| s.unit == actor.unit),
            Role::Admin => true,
            Role::System | Role::Anonymous => false,
        }
    }

    /// Every identity a demo token is made for: one per unit.
    pub fn identities(&self) -> Vec<Actor> {
        let mut out: Vec<Actor> = self.townships.iter().map(|t| Actor::new(Role::Township, t.clone())).collect();
        out.extend(self.departments.iter().map(|d| Actor::new(Role::Department, d.clone())));
        out.push(Actor::new(Role::Office, self.office.clone()));
        out.push(Actor::new(Role::Coordinator, self.coordinator.clone()));
        out.extend(self.supervisors.iter().map(|s| Actor::new(Role::Supervisor, s.unit.clone())));
        out.push(Actor::new(Role::Admin, "管理员"));
        out
    }
}

/// One stored token: its hash and whom it stands for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub sha256: String,
    pub role: Role,
    pub unit: String,
    #[serde(default)]
    pub label: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

/// Token hash → identity.
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_hash: BTreeMap<String, Actor>,
}

/// Length of the random part of a token, in hex characters.
const TOKEN_HEX_CHARS: usize = 64;

impl Tokens {
    pub fn from_file(file: &TokenFile) -> Self {
        let by_hash = file.tokens.iter().map(|t| (t.sha256.clone(), Actor::new(t.role, t.unit.clone()))).collect();
        Tokens { by_hash }
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        Ok(Tokens::from_file(&read_token_file(path)?))
    }

    /// The identity behind a presented token.
    pub fn identify(&self, token: &str) -> Option<&Actor> {
        self.by_hash.get(&token_sha256(token))
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

pub fn read_token_file(path: &Path) -> Result<TokenFile, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the token file with mode 0600: it holds hashes only, but no one else needs it.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A new random token: `wt_` and 64 hex characters (256 bits).
pub fn new_token() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    let mut hex = format!("{a}{b}");
    hex.truncate(TOKEN_HEX_CHARS);
    format!("wt_{hex}")
}

pub fn token_sha256(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds a token for `actor` to the token file and returns it (the only time it is shown).
pub fn add_token(path: &Path, actor: &Actor, label: &str) -> Result<String, String> {
    let mut file = read_token_file(path)?;
    let token = new_token();
    file.tokens.push(TokenEntry {
        sha256: token_sha256(&token),
        role: actor.role,
        unit: actor.unit.clone(),
        label: label.into(),
    });
    let text = toml::to_string_pretty(&file).map_err(|e| e.to_string())?;
    write_private(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

/// Whether `actor` may see a case at all (out of scope is answered 404, never 403).
pub fn can_see(actor: &Actor, state: &State) -> bool {
    match (actor.role, state) {
        (Role::Supervisor | Role::Admin, State::Whistle(_) | State::Feedback(_)) => true,
        (Role::Township, State::Whistle(c)) => c.kind.township == actor.unit,
        (Role::Township, State::Feedback(c)) => c.kind.submitter.as_ref() == Some(actor),
        (Role::Department, State::Whistle(c)) => c.kind.departments.contains_key(&actor.unit),
        (Role::Coordinator, State::Whistle(_)) => true,
        (Role::Office, State::Feedback(_)) => true,
        _ => false,
    }
}
