//! The read-only dashboard the admin address serves at `/`: one static page (`dashboard/`)
//! whose script polls the JSON of `/api/cells`, `/api/lrps` and `/api/tasks` and follows the
//! event hub on `/api/events` (Server-Sent Events).
//!
//! - Reads go through the unfenced reader store the list RPCs use, with the same keyset-paged
//!   listings, so a standby serves them too; the page says when it looks at a standby.
//! - Every answer is bounded ([`views::Limits`]): so many LRPs per page, so many instance rows
//!   per LRP, so many tasks read, each with a "N more" count.
//! - The event stream is one hub subscription per page, with the hub's bounded buffer: a browser
//!   that falls behind is told (`event: closed`) and the stream ends, like a slow gRPC
//!   subscriber; the page then re-lists and subscribes again.
//! - The JSON views are pure functions in [`views`]; this module only reads and assembles.

pub mod views;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use db::Store;
use db::sql::actual_lrps::ActualLrpFilter;
use db::sql::desired_lrps::DesiredLrpFilter;
use db::sql::tasks::TaskFilter;
use futures::{Stream, StreamExt};
use proto::models::{CellId, ProcessGuid, SchedulingInfo};

use self::views::{CellLoad, Count, Limits, LrpsView, StatusView, TaskTally};
use crate::events::EventHub;
use crate::leader::{LeaderState, Leadership};

/// The page and its assets, compiled in.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// The page's script.
pub const SCRIPT_JS: &str = include_str!("dashboard/dashboard.js");
/// The page's style sheet.
pub const STYLE_CSS: &str = include_str!("dashboard/dashboard.css");

/// How often an idle event stream sends a comment, so proxies and browsers keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Rows per statement when counting (desired LRPs after a page, tasks).
const COUNT_BATCH: usize = 1_000;

/// Why the event stream cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventsRefused {
    /// This BBS was built without an event hub.
    NotWired,
    /// This BBS does not lead: events happen on the leader.
    Standby {
        /// The leader's advertised address, when known.
        leader: Option<String>,
    },
    /// The hub serves its maximum of streams.
    Full(String),
}

/// The dashboard's data: the BBS's reader store, leadership and (when wired) event hub.
pub struct Dashboard {
    leadership: Arc<Leadership>,
    events: Option<Arc<EventHub>>,
    limits: Limits,
}

impl Dashboard {
    /// A dashboard over `leadership`'s reader, without events until [`Dashboard::with_events`].
    pub fn new(leadership: Arc<Leadership>) -> Self {
        Self { leadership, events: None, limits: Limits::default() }
    }

    /// The same dashboard, streaming `hub`'s events.
    pub fn with_events(mut self, hub: Arc<EventHub>) -> Self {
        self.events = Some(hub);
        self
    }

    /// The same dashboard with other bounds.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn store(&self) -> &Store {
        self.leadership.reader()
    }

    /// Who leads, and whether events are served here.
    pub fn status(&self) -> StatusView {
        match self.leadership.state() {
            LeaderState::Leading { .. } => StatusView { leading: true, leader: None, events: self.events.is_some() },
            LeaderState::Standby { leader } => StatusView { leading: false, leader, events: false },
        }
    }

    /// Live cells and what the rows and tasks placed on each use.
    pub async fn cells(&self) -> Result<views::CellsView, db::Error> {
        let store = self.store();
        let mut presences = crate::cells::live_cells(store).await?;
        presences.sort_by(|a, b| a.cell_id.as_str().cmp(b.cell_id.as_str()));
        let per_cell = self.limits.rows_per_cell;
        let mut placed: Vec<(CellId, Vec<ProcessGuid>, CellLoad)> = Vec::new();
        for presence in presences.iter().take(self.limits.cells) {
            let cell_id = presence.cell_id.clone();
            let rows_filter = ActualLrpFilter { cell_id: Some(cell_id.clone()), ..ActualLrpFilter::default() };
            let rows = store.actual_lrps_page(&rows_filter, None, per_cell).await?;
            let tasks_filter = TaskFilter { cell_id: Some(cell_id.clone()), ..TaskFilter::default() };
            let tasks = store.tasks_page(&tasks_filter, None, per_cell).await?;
            let mut load = CellLoad {
                truncated: rows.resume_after.is_some() || tasks.resume_after.is_some(),
                ..CellLoad::default()
            };
            for task in &tasks.items {
                load.add_task(task);
            }
            let guids = rows.items.into_iter().map(|row| row.key.process_guid).collect();
            placed.push((cell_id, guids, load));
        }
        let distinct: BTreeSet<&ProcessGuid> = placed.iter().flat_map(|(_, guids, _)| guids).collect();
        let infos = self.scheduling_infos(distinct.into_iter().cloned().collect()).await?;
        let loads = placed
            .into_iter()
            .map(|(cell_id, guids, mut load)| {
                for guid in &guids {
                    load.add_instance(infos.get(guid.as_str()));
                }
                (cell_id.to_string(), load)
            })
            .collect();
        Ok(views::cells_view(presences, &loads, &self.limits))
    }

    /// The scheduling infos of `guids` (missing ones are gone), by process guid.
    async fn scheduling_infos(&self, guids: Vec<ProcessGuid>) -> Result<HashMap<String, SchedulingInfo>, db::Error> {
        let mut infos = HashMap::new();
        for chunk in guids.chunks(proto::limits::MAX_FILTER_GUIDS) {
            let filter = DesiredLrpFilter { process_guids: chunk.to_vec(), ..DesiredLrpFilter::default() };
            let mut after: Option<String> = None;
            loop {
                let page = self.store().scheduling_infos_page(&filter, after.as_deref(), chunk.len()).await?;
                for info in page.items {
                    infos.insert(info.process_guid.to_string(), info);
                }
                match page.resume_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(infos)
    }

    /// One page of desired LRPs after the process guid `after`, each with its first instance
    /// rows, and how many LRPs follow.
    pub async fn lrps(&self, after: Option<&ProcessGuid>) -> Result<LrpsView, db::Error> {
        let store = self.store();
        let all = DesiredLrpFilter::default();
        let page =
            store.scheduling_infos_page(&all, after.map(|g| g.as_str()), self.limits.lrps_per_page.max(1)).await?;
        let mut lrps = Vec::with_capacity(page.items.len());
        for info in &page.items {
            let filter =
                ActualLrpFilter { process_guid: Some(info.process_guid.clone()), ..ActualLrpFilter::default() };
            // One row past the cap says whether there are more.
            let rows = store.actual_lrps_page(&filter, None, self.limits.instances_per_lrp + 1).await?;
            let more = rows.resume_after.is_some() && rows.items.len() > self.limits.instances_per_lrp;
            lrps.push(views::lrp_view(info, rows.items, more, &self.limits));
        }
        let next_after = page.resume_after.clone();
        let more_lrps = match &next_after {
            None => Count::default(),
            Some(next) => self.count_lrps_after(next).await?,
        };
        Ok(LrpsView { lrps, next_after, more_lrps })
    }

    /// Desired LRPs after `after`, counted up to [`Limits::lrps_counted`].
    async fn count_lrps_after(&self, after: &str) -> Result<Count, db::Error> {
        let all = DesiredLrpFilter::default();
        let mut count = Count::default();
        let mut after = after.to_owned();
        loop {
            let room = self.limits.lrps_counted.saturating_sub(count.count);
            if room == 0 {
                count.at_least = true;
                return Ok(count);
            }
            let page = self.store().scheduling_infos_page(&all, Some(&after), room.min(COUNT_BATCH)).await?;
            count.count += page.items.len();
            match page.resume_after {
                Some(next) => after = next,
                None => return Ok(count),
            }
        }
    }

    /// Tasks by state (up to [`Limits::tasks_counted`] read) and the most recently updated.
    pub async fn tasks(&self) -> Result<views::TasksView, db::Error> {
        let filter = TaskFilter::default();
        let mut tally = TaskTally::new(&self.limits);
        let (mut read, mut after) = (0_usize, None::<String>);
        loop {
            let room = self.limits.tasks_counted.saturating_sub(read);
            if room == 0 {
                return Ok(tally.view(true));
            }
            let page = self.store().tasks_page(&filter, after.as_deref(), room.min(COUNT_BATCH)).await?;
            read += page.items.len();
            for task in &page.items {
                tally.add(task);
            }
            match page.resume_after {
                Some(next) => after = Some(next),
                None => return Ok(tally.view(false)),
            }
        }
    }

    /// The event stream as Server-Sent Events messages: `instance` and `task` events, comments
    /// while idle, and a last `closed` message when the hub ends the stream (this BBS stopped
    /// leading, or the browser fell more than the hub's buffer behind).
    pub fn events(&self) -> Result<impl Stream<Item = String> + Send + 'static + use<>, EventsRefused> {
        let Some(hub) = &self.events else { return Err(EventsRefused::NotWired) };
        if let LeaderState::Standby { leader } = self.leadership.state() {
            return Err(EventsRefused::Standby { leader });
        }
        hub.admit().map_err(|e| EventsRefused::Full(e.to_string()))?;
        let instances = hub
            .subscribe_instances(String::new())
            .map(|item| item.map(|e| e.event.map(|e| ("instance", views::instance_event_view(&e)))));
        let tasks =
            hub.subscribe_tasks().map(|item| item.map(|e| e.event.map(|e| ("task", views::task_event_view(&e)))));
        let keepalive = futures::stream::unfold((), |()| async {
            tokio::time::sleep(KEEPALIVE).await;
            Some((Ok(None), ()))
        });
        let merged = futures::stream::select(futures::stream::select(instances, tasks), keepalive);
        // Ends right after the first error (the hub's last word on this stream), without
        // waiting for another item.
        let messages = futures::stream::unfold((merged.boxed(), false), |(mut merged, ended)| async move {
            if ended {
                return None;
            }
            let (message, ended) = match merged.next().await? {
                Ok(Some((name, view))) => (views::sse_message(name, &json(&view)), false),
                Ok(None) => (": keepalive\n\n".to_owned(), false),
                Err(status) => {
                    let reason = serde_json::json!({ "reason": status.message() });
                    (views::sse_message("closed", &reason.to_string()), true)
                }
            };
            Some((message, (merged, ended)))
        });
        // The first message says the stream is open (the page shows "live").
        let hello = views::sse_message("open", "{}");
        Ok(futures::stream::once(futures::future::ready(hello)).chain(messages))
    }
}

/// `value` as JSON; the views always serialize.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}
