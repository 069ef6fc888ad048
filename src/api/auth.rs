//! Who is calling: the organisation (units and supervisors), bearer tokens stored only as
//! SHA-256 hashes, and the scope rules of DESIGN.md ("Who may do what").

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::event::{Actor, Role};
use crate::domain::state::State;

/// The organisation the service runs for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    /// Every township; with districts it may be left out (each district lists its own).
    #[serde(default)]
    pub townships: Vec<String>,
    /// The city's departments (with districts, theirs are added).
    #[serde(default)]
    pub departments: Vec<String>,
    /// The burden-reduction office (减负办).
    pub office: String,
    /// Who settles responsibility disputes (e.g. the staffing office, 编办).
    pub coordinator: String,
    pub supervisors: Vec<Supervisor>,
    /// The districts (区/县) between the city and its townships, each with its townships and
    /// its own departments. None: the whole city is one district.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub districts: Vec<District>,
    /// Where alerts go besides the live stream and the alert subjects.
    #[serde(default, skip_serializing_if = "is_default_alerts")]
    pub alerts: crate::alerts::AlertConfig,
    /// When the 三率 通报 is published.
    #[serde(default)]
    pub reports: crate::reports::ReportSchedule,
    /// Rules for duplicates and hand-overs.
    #[serde(default, skip_serializing_if = "is_default_rules")]
    pub cases: CaseRules,
    /// Limits on evidence files.
    #[serde(default, skip_serializing_if = "is_default_attachments")]
    pub attachments: AttachmentRules,
}

fn is_default_attachments(r: &AttachmentRules) -> bool {
    *r == AttachmentRules::default()
}

/// org.toml `[attachments]`: how large a file and how many a case may carry (files are always
/// optional).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentRules {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Most files a case carries.
    pub max_per_case: usize,
}

/// Largest file any configuration may allow, in bytes.
pub const ATTACHMENT_BYTES_CEILING: u64 = 100 * 1024 * 1024;

impl Default for AttachmentRules {
    fn default() -> Self {
        AttachmentRules { max_bytes: 10 * 1024 * 1024, max_per_case: 10 }
    }
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervisor {
    pub unit: String,
    /// The rung of the escalation ladder: 1 is told of warnings and breaches, 2 of the first
    /// escalation, 3 of the next…
    pub level: u8,
    /// The district it answers for; none: the whole city.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
}

/// A district (区/县): its townships (街道/乡镇) and the departments at its level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct District {
    pub name: String,
    pub townships: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
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
                Supervisor { unit: "区委督查室".into(), level: 1, district: None },
                Supervisor { unit: "市委督查室".into(), level: 2, district: None },
            ],
            districts: Vec::new(),
            attachments: AttachmentRules::default(),
            alerts: crate::alerts::AlertConfig::default(),
            reports: crate::reports::ReportSchedule::default(),
            cases: CaseRules::default(),
        }
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        let mut org: Org = toml::from_str(text).map_err(|e| e.to_string())?;
        org.check_tree()?;
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
        let files = &org.attachments;
        if !(1..=ATTACHMENT_BYTES_CEILING).contains(&files.max_bytes) {
            return Err(format!("[attachments] max_bytes is 1 to {ATTACHMENT_BYTES_CEILING} (100 MiB)"));
        }
        if !(1..=crate::domain::files::ATTACHMENTS_PER_CASE_MAX).contains(&files.max_per_case) {
            return Err(format!(
                "[attachments] max_per_case is 1 to {}",
                crate::domain::files::ATTACHMENTS_PER_CASE_MAX
            ));
        }
        Ok(org)
    }

    /// Checks the districts and supervisors, and completes the flat lists: every township and
    /// department of a district is one of the organisation's (listing it at the top as well is
    /// allowed). With districts, every township belongs to exactly one.
    fn check_tree(&mut self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        let mut home: BTreeMap<&str, &str> = BTreeMap::new();
        for d in &self.districts {
            if d.name.trim().is_empty() {
                return Err("a district needs a name".into());
            }
            if !names.insert(d.name.as_str()) {
                return Err(format!("two districts are named {:?}", d.name));
            }
            if d.townships.is_empty() {
                return Err(format!("district {:?} has no townships", d.name));
            }
            for t in &d.townships {
                if let Some(other) = home.insert(t, &d.name) {
                    return Err(format!("township {t:?} is in two districts: {other:?} and {:?}", d.name));
                }
            }
        }
        if !self.districts.is_empty() {
            if let Some(t) = self.townships.iter().find(|t| !home.contains_key(t.as_str())) {
                return Err(format!("township {t:?} is in no district: with districts, each township is in one"));
            }
        }
        for s in &self.supervisors {
            if !(1..=crate::domain::policy::LEVEL_MAX).contains(&s.level) {
                return Err(format!("supervisor {:?}: level is 1 to {}", s.unit, crate::domain::policy::LEVEL_MAX));
            }
            if let Some(d) = s.district.as_deref().filter(|d| !names.contains(d)) {
                return Err(format!("supervisor {:?}: no district is named {d:?}", s.unit));
            }
        }
        let (mut townships, mut departments) = (Vec::new(), Vec::new());
        for d in &self.districts {
            townships.extend(d.townships.iter().filter(|t| !self.townships.contains(t)).cloned());
            departments.extend(d.departments.iter().filter(|x| !self.departments.contains(x)).cloned());
        }
        self.townships.extend(townships);
        self.departments.extend(departments);
        Ok(())
    }

    /// The district a township belongs to (none without districts).
    pub fn district_of(&self, township: &str) -> Option<&str> {
        self.districts.iter().find(|d| d.townships.iter().any(|t| t == township)).map(|d| d.name.as_str())
    }

    /// The district a supervisor answers for (`None`: the whole city, or not a supervisor).
    pub fn supervisor_district(&self, unit: &str) -> Option<&str> {
        self.supervisors.iter().find(|s| s.unit == unit).and_then(|s| s.district.as_deref())
    }

    /// The district `actor` is confined to: a district's supervisor's (`None` for everyone else,
    /// whose scope is not a district).
    pub fn scope_district(&self, actor: &Actor) -> Option<&str> {
        (actor.role == Role::Supervisor).then(|| self.supervisor_district(&actor.unit)).flatten()
    }

    /// Whether a case is within `actor`'s district, when `actor` is confined to one: only a
    /// whistle belongs to a district (its township's); feedback is the city's, whatever township
    /// its submitter is from. Always true for callers not confined to a district.
    pub fn within_district(&self, actor: &Actor, case_kind: &str, township: Option<&str>) -> bool {
        match self.scope_district(actor) {
            None => true,
            Some(district) => case_kind == "whistle" && township.and_then(|t| self.district_of(t)) == Some(district),
        }
    }

    /// Who supervises which township, for alert delivery.
    pub fn supervision(&self) -> crate::alerts::Supervision {
        crate::alerts::Supervision {
            districts: self
                .districts
                .iter()
                .flat_map(|d| d.townships.iter().map(|t| (t.clone(), d.name.clone())))
                .collect(),
            supervisors: self.supervisors.clone(),
        }
    }

    /// The escalation ladder's top: the highest supervisor level.
    pub fn top_level(&self) -> u8 {
        self.supervisors.iter().map(|s| s.level).max().unwrap_or(crate::domain::policy::TOP_LEVEL_DEFAULT)
    }

    /// Every unit a message may be for: the organisation's units, `supervisors` (通报,
    /// extension requests) and `log` (operator notices).
    fn message_units(&self) -> Vec<String> {
        let mut units: Vec<String> = self.townships.iter().chain(&self.departments).cloned().collect();
        units.extend([self.office.clone(), self.coordinator.clone(), "supervisors".into(), "log".into()]);
        units.extend(self.supervisors.iter().map(|s| s.unit.clone()));
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
        // The ladder above each district's townships (or the whole city's).
        let supervision = self.supervision();
        let mut groups: Vec<(String, Vec<&String>)> =
            self.districts.iter().map(|d| (d.name.clone(), d.townships.iter().collect())).collect();
        if groups.is_empty() {
            groups.push(("全市".to_owned(), self.townships.iter().collect()));
        }
        for (name, townships) in groups {
            let first = townships.first().map(|t| t.as_str());
            let rungs: Vec<String> = (1..=self.top_level())
                .map(|level| {
                    let told = supervision.told(first, level);
                    let who = if told.is_empty() { "nobody".to_owned() } else { told.join(", ") };
                    format!("level {level} {who}")
                })
                .collect();
            let townships: Vec<&str> = townships.iter().map(|t| t.as_str()).collect();
            out.push_str(&format!("{name} ({}): {}\n", townships.join(", "), rungs.join("; ")));
        }
        for w in &self.alerts.webhooks {
            let kinds: Vec<&str> = crate::alerts::message_kinds().filter(|k| w.wants_kind(k)).collect();
            let units = if w.units.is_empty() { "every unit".to_owned() } else { w.units.join(", ") };
            out.push_str(&format!("{} ({:?}): {} — for {units}\n", w.name, w.format, kinds.join(", ")));
        }
        let supervisor = |u: &String| self.supervisors.iter().any(|s| &s.unit == u);
        for unit in self.message_units().into_iter().filter(|u| u != "log" && !supervisor(u)) {
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
    crate::domain::files::sha256_hex(token.trim().as_bytes())
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

/// Whether `actor` may see a case at all (out of scope is answered 404, never 403). A
/// supervisor of a district sees the whistles of its townships; feedback goes to the city's
/// burden-reduction office, so only supervisors of the whole city see it.
pub fn can_see(org: &Org, actor: &Actor, state: &State) -> bool {
    match (actor.role, state) {
        (Role::Supervisor, State::Whistle(c)) => org.within_district(actor, "whistle", Some(&c.kind.township)),
        (Role::Supervisor, State::Feedback(_)) => org.within_district(actor, "feedback", None),
        (Role::Admin, State::Whistle(_) | State::Feedback(_)) => true,
        (Role::Township, State::Whistle(c)) => c.kind.township == actor.unit,
        (Role::Township, State::Feedback(c)) => c.kind.submitter.as_ref() == Some(actor),
        (Role::Department, State::Whistle(c)) => c.kind.departments.contains_key(&actor.unit),
        (Role::Coordinator, State::Whistle(_)) => true,
        (Role::Office, State::Feedback(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: &str = "townships = [\"甲镇\", \"乙镇\"]\ndepartments = [\"住建局\"]\noffice = \"减负办\"\n\
                        coordinator = \"编办\"\n[[supervisors]]\nunit = \"市督查室\"\nlevel = 1\n";

    fn with(extra: &str) -> Result<Org, String> {
        Org::from_toml(&format!("{FLAT}{extra}"))
    }

    #[test]
    fn a_flat_file_is_one_district_and_its_supervisors_see_everything() {
        let org = with("").unwrap();
        assert_eq!(org.district_of("甲镇"), None);
        assert_eq!(org.supervisor_district("市督查室"), None);
        assert_eq!(org.top_level(), 1);
        assert_eq!(org.supervision().told(Some("甲镇"), 1), vec!["市督查室".to_owned()]);
    }

    #[test]
    fn district_townships_and_departments_join_the_flat_lists() {
        let org = with(
            "[[districts]]\nname = \"东区\"\ntownships = [\"甲镇\", \"丙镇\"]\ndepartments = [\"东区住建局\"]\n\
             [[districts]]\nname = \"西区\"\ntownships = [\"乙镇\"]\n",
        )
        .unwrap();
        assert_eq!(org.townships, ["甲镇", "乙镇", "丙镇"]);
        assert_eq!(org.departments, ["住建局", "东区住建局"]);
        assert_eq!(org.district_of("丙镇"), Some("东区"));
        assert_eq!(Org::from_toml(&org.to_toml()).unwrap(), org, "what it writes reads back the same");
    }

    #[test]
    fn a_tree_that_does_not_hold_together_is_refused_with_the_reason() {
        let two = "[[districts]]\nname = \"东区\"\ntownships = [\"甲镇\", \"乙镇\"]\n\
                   [[districts]]\nname = \"西区\"\ntownships = [\"乙镇\"]\n";
        assert!(with(two).unwrap_err().contains("\"乙镇\" is in two districts"));
        let missing = "[[districts]]\nname = \"东区\"\ntownships = [\"甲镇\"]\n";
        assert!(with(missing).unwrap_err().contains("\"乙镇\" is in no district"));
        let same = "[[districts]]\nname = \"东区\"\ntownships = [\"甲镇\"]\n\
                    [[districts]]\nname = \"东区\"\ntownships = [\"乙镇\"]\n";
        assert!(with(same).unwrap_err().contains("two districts are named"));
        let unknown = "[[districts]]\nname = \"东区\"\ntownships = [\"甲镇\", \"乙镇\"]\n\
                       [[supervisors]]\nunit = \"北区督查室\"\nlevel = 1\ndistrict = \"北区\"\n";
        assert!(with(unknown).unwrap_err().contains("no district is named \"北区\""));
        let level = "[[supervisors]]\nunit = \"省督查室\"\nlevel = 10\n";
        assert!(with(level).unwrap_err().contains("level is 1 to 9"));
    }
}
