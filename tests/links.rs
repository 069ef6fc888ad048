//! Duplicates, comments and hand-overs through the real log and projector, on both back ends:
//! the original's view learns its duplicates (so their townships follow it) in the same batch,
//! unlinking undoes that, and views projected step by step equal a rebuild from the log.

#[path = "support/backends.rs"]
#[macro_use]
mod backends;
#[path = "support/nats_server.rs"]
mod nats_server;

use backends::{open_log, Backend};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;
use whistle::domain::command::{Command, CommandBody};
use whistle::domain::event::{Actor, Role, Urgency};
use whistle::domain::{Calendar, SlaPolicy};
use whistle::execute::execute;
use whistle::log::EventLog;
use whistle::projector::keys::unit_list_prefix;
use whistle::projector::views::Views;
use whistle::projector::Projector;

fn township(unit: &str) -> Actor {
    Actor::new(Role::Township, unit)
}

fn raise(title: &str) -> CommandBody {
    CommandBody::RaiseWhistle {
        title: title.into(),
        description: "村口河道垃圾堆积，影响排涝".into(),
        departments: vec!["住建局".into()],
        category: None,
        location: None,
        urgency: Urgency::Normal,
    }
}

/// Commands run one by one, the projector catching up after each (incremental projection).
struct Steps {
    log: std::sync::Arc<dyn EventLog>,
    projector: Projector,
    now: DateTime<Utc>,
    n: u128,
}

impl Steps {
    async fn run(&mut self, case_id: Uuid, actor: Actor, body: CommandBody) {
        self.n += 1;
        self.now += Duration::minutes(7);
        let cmd = Command::new(Uuid::from_u128(0xC0_0000 + self.n), case_id, actor, body);
        execute(self.log.as_ref(), &cmd, self.now).await.unwrap_or_else(|e| panic!("step {}: {e}", self.n));
        self.projector.catch_up(self.log.as_ref(), true, |_, _| {}).await.unwrap();
    }
}

fn listed(views: &Views, unit: &str) -> Vec<Uuid> {
    let (mut ids, _) = views.list(&[unit_list_prefix(unit)], None, 100).unwrap();
    ids.sort();
    ids
}

async fn duplicates_follow_their_original_and_a_rebuild_agrees(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _server) = open_log(backend, dir.path()).await;
    let views = Views::open(dir.path().join("views")).unwrap();
    let projector = Projector::new(views.clone(), SlaPolicy::default(), Calendar::official()).unwrap();
    let start = DateTime::parse_from_rfc3339("2026-03-02T09:00:00+08:00").unwrap().with_timezone(&Utc);
    let mut steps = Steps { log: log.clone(), projector, now: start, n: 0 };
    let (original, twice, elsewhere) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    steps.run(original, township("东坝镇"), raise("村口河道垃圾堆积")).await;
    steps.run(twice, township("东坝镇"), raise("村口河道垃圾堆积")).await;
    steps.run(elsewhere, township("西湖街道"), raise("河道垃圾堆积")).await;
    let mark = |of| CommandBody::MarkDuplicate { original: of };
    steps.run(twice, township("东坝镇"), mark(original)).await;
    steps.run(elsewhere, Actor::new(Role::Department, "住建局"), mark(original)).await;
    steps
        .run(
            original,
            township("西湖街道"),
            CommandBody::AddComment { body: "@住建局 同一条河".into(), mentions: vec!["住建局".into()] },
        )
        .await;

    let view = views.case(original).unwrap().unwrap();
    let linked: Vec<(Uuid, Option<String>)> = view.duplicates.iter().map(|d| (d.case_id, d.unit.clone())).collect();
    assert_eq!(linked, [(twice, Some("东坝镇".into())), (elsewhere, Some("西湖街道".into()))]);
    assert!(listed(&views, "西湖街道").contains(&original), "西湖街道 follows the original: it is in its list");
    assert_eq!(views.case(twice).unwrap().unwrap().status(), Some("duplicate"));
    assert_eq!(views.armed_count().unwrap(), 1, "only the original's 报到 clock is armed");

    steps.run(elsewhere, township("西湖街道"), CommandBody::UnlinkDuplicate).await;
    let view = views.case(original).unwrap().unwrap();
    assert_eq!(view.duplicates.len(), 1);
    assert!(!listed(&views, "西湖街道").contains(&original), "unlinked: no longer followed");
    assert!(listed(&views, "西湖街道").contains(&elsewhere));
    assert_eq!(views.armed_count().unwrap(), 2, "the unlinked whistle's clock runs again");
    let incremental = views.digest().unwrap();

    let rebuilt = Views::open(dir.path().join("rebuilt")).unwrap();
    let (_, digest) =
        whistle::projector::rebuild(rebuilt, log.as_ref(), SlaPolicy::default(), Calendar::official(), |_, _| {})
            .await
            .unwrap();
    assert_eq!(digest, incremental, "views projected step by step equal a rebuild");
}

on_both!(duplicates_follow_their_original_and_a_rebuild_agrees);
