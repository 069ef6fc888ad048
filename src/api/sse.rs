//! The live alert stream (Server-Sent Events), scoped to the caller. Each new alert is an
//! `alert` event whose id is its log position; a client that reconnects with
//! `Last-Event-ID` first gets the alerts after that position from the views, then live ones.
//! Acknowledgements arrive as `alert_acknowledged` events.
//!
//! Notices to the caller's unit (a summons to a department, a report-in to the township…) arrive
//! as `notice` events, live only, as they are published on `whistle.notice.…`: from any
//! instance of a cluster (on NATS the subject reaches every instance). They are not replayed:
//! the lists they are about are read from the views.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::queries::{alert_visible, ALERTS_LIST_MAX};
use super::{authenticated, ApiError, Shared};
use crate::projector::model::AlertView;

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn stream(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let actor = authenticated(&state, &headers)?;
    // Subscribe before reading the backlog, so nothing falls between the two.
    let live = BroadcastStream::new(state.live_alerts.subscribe());
    let notices = notices_for(&state, &actor).await;
    let last_seen: Option<u64> =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    let mut backlog: Vec<AlertView> = match last_seen {
        Some(after) => state
            .views
            .alerts(false, ALERTS_LIST_MAX)?
            .into_iter()
            .filter(|a| a.position > after && alert_visible(&state, &actor, a))
            .collect(),
        None => Vec::new(),
    };
    backlog.sort_by_key(|a| a.position);
    let replayed_up_to = backlog.last().map(|a| a.position).or(last_seen).unwrap_or(0);
    let backlog = futures::stream::iter(backlog.into_iter().map(|a| Ok(event(&a, false))));
    let scope = state.clone();
    let live = live.filter_map(move |item| {
        let out = match item {
            Ok(alert) if alert_visible(&scope, &actor, &alert) => {
                let fresh = alert.position > replayed_up_to || alert.acknowledged_by.is_some();
                fresh.then(|| Ok(event(&alert, alert.acknowledged_by.is_some())))
            }
            // A listener that fell behind catches up from the alerts list.
            _ => None,
        };
        std::future::ready(out)
    });
    // A stopping service ends every stream (clients reconnect elsewhere with Last-Event-ID);
    // an open stream would otherwise hold the graceful shutdown forever.
    let mut shutdown = state.shutdown.clone();
    let stopping = async move {
        if shutdown.wait_for(|stop| *stop).await.is_err() {
            // Nobody can stop this service any more: the stream lives as long as its client.
            std::future::pending::<()>().await;
        }
    };
    let events = futures::stream::select(backlog.chain(live), notices).take_until(stopping);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The notices for the caller's unit, as `notice` events; none if the log cannot be watched.
async fn notices_for(
    state: &Shared,
    actor: &crate::domain::event::Actor,
) -> futures::stream::BoxStream<'static, Result<Event, Infallible>> {
    use crate::domain::event::Role;
    let recipient = match actor.role {
        Role::Supervisor | Role::Admin => "supervisors".to_owned(),
        _ => actor.unit.clone(),
    };
    /// The fields routing needs; the payload goes out as it came.
    #[derive(serde::Deserialize)]
    struct Recipient {
        unit: String,
        #[serde(default)]
        case_kind: Option<String>,
        #[serde(default)]
        township: Option<String>,
    }
    // A district's supervisor hears the supervisors' notices (an extension request…) of the cases
    // in its district, and those about no case (the 通报).
    let (scope, actor) = (state.clone(), actor.clone());
    let in_scope = move |n: &Recipient| match &n.case_kind {
        Some(kind) => scope.org.within_district(&actor, kind, n.township.as_deref()),
        None => true,
    };
    // The subject's last token names the recipient, so other units' notices are passed over
    // without decoding them (a token can stand for more than one name: the payload decides).
    let suffix = format!(".{}", crate::log::subject_token(&recipient));
    match state.log.watch_alerts(crate::alerts::notice::NOTICE_SUBJECT_PREFIX).await {
        Ok(watched) => watched
            .filter_map(move |(subject, payload)| {
                let mine = subject.ends_with(&suffix)
                    && serde_json::from_slice::<Recipient>(&payload).is_ok_and(|n| n.unit == recipient && in_scope(&n));
                let out = mine.then(|| Ok(Event::default().event("notice").data(String::from_utf8_lossy(&payload))));
                std::future::ready(out)
            })
            .boxed(),
        Err(e) => {
            tracing::warn!("notices are not streamed: {e}");
            futures::stream::empty().boxed()
        }
    }
}

/// An `alert` event (id: its log position), or an `alert_acknowledged` update. Replayed
/// alerts are always `alert` events; their data says whether they were acknowledged since.
fn event(alert: &AlertView, acknowledgement: bool) -> Event {
    let data = serde_json::to_string(alert).expect("alert views serialise (plain data)");
    if acknowledgement {
        Event::default().event("alert_acknowledged").data(data)
    } else {
        Event::default().event("alert").id(alert.position.to_string()).data(data)
    }
}
