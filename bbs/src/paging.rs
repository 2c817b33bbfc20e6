//! Paged listings: every list RPC (DesiredLRPs, DesiredLRPSchedulingInfos,
//! DesiredLRPRoutingInfos, ActualLRPs, Tasks, Cells) answers one page and, when more items
//! follow, a `next_page_token` to pass back as `page_token`. (Domains lists names only and is
//! not paged.)
//!
//! - **Size.** A page stops before its encoded size would pass [`MAX_PAGE_BYTES`] (3.5 MiB), so
//!   a response always fits the default 4 MiB gRPC message limit of every client, whatever the
//!   data (a hundred thousand instances, desired LRPs with megabyte environments). Only an item
//!   that is alone bigger than that is sent alone, in a page of its own.
//! - **Count.** `page_size` 0 means no count limit (old clients that never page still get
//!   everything that fits, and a token when something does not); above [`MAX_PAGE_SIZE`] it is
//!   refused with INVALID_ARGUMENT naming `page_size` (the bound of `*.page_size` in proto's
//!   request limits, which refuses it even before decoding). A page may hold fewer items than
//!   `page_size` asks (the size cap) and still have a token.
//! - **Order and tokens.** Items come in primary-key order (keyset paging in the store,
//!   `db::sql::page`; cells, read whole from their presences, by cell id). A token is the hex of a small JSON array naming the listing and the last
//!   key returned; it names a key, not a row, so it stays valid when that row is deleted, and it
//!   does not expire. A token of another listing, or garbage, is INVALID_ARGUMENT on
//!   `page_token`. Callers must send the same filter with every page.
//!
//! The store is read in batches sized from the average item seen so far, so a page of huge items
//! does not read thousands of rows it cannot send, and a page of small ones takes few statements.
//!
//! **Streamed listings** ([`stream`]: StreamActualLRPs, StreamDesiredLRPSchedulingInfos) send a
//! whole listing over one server stream, as messages of at most `page_size` items
//! ([`STREAM_DEFAULT_ITEMS`] when 0) that stop before [`STREAM_MESSAGE_BYTES`]. A reader task
//! reads the store one keyset batch (one short statement, no transaction) at a time and hands
//! each message to the gRPC stream through a channel of [`STREAM_QUEUE`] slot: when the client
//! stops reading, the send waits and the reader reads nothing more, so a stream holds at most
//! one batch, the message being filled and the one queued, whatever the listing's size. Each
//! message carries the token after its last item (empty on the last message), so a client whose
//! stream broke resumes where it was.

use db::sql::page::{ActualLrpCursor, MAX_BATCH, Page};
use futures::Stream;
use proto::models::ValidationError;
use tokio::sync::mpsc;

use crate::{Error, Result};

/// Largest encoded size of one page's items (3.5 MiB, under the default 4 MiB message limit with
/// room for the token and framing).
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;

/// Largest `page_size` accepted (proto's request limits bound `*.page_size` the same way).
pub const MAX_PAGE_SIZE: u32 = 100_000;

/// The rows of the first store read of a page, before any item size is known.
const FIRST_BATCH: usize = 16;

/// A key a listing can resume after, and its token form.
pub trait Cursor: Sized + Clone {
    /// The listing's name inside its tokens.
    const LISTING: &'static str;
    /// The key as JSON values.
    fn to_json(&self) -> Vec<serde_json::Value>;
    /// The key from JSON values, or `None` when they do not form one.
    fn from_json(values: &[serde_json::Value]) -> Option<Self>;
}

/// The cursor of the desired-LRP listings (a process guid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredCursor(pub String);

/// The cursor of the task listing (a task guid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCursor(pub String);

/// The cursor of the cell listing (a cell id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellCursor(pub String);

/// A cursor that is one string key, named `listing` in its tokens.
macro_rules! string_cursor {
    ($($cursor:ident => $listing:literal),* $(,)?) => {$(
        impl Cursor for $cursor {
            const LISTING: &'static str = $listing;
            fn to_json(&self) -> Vec<serde_json::Value> {
                vec![self.0.clone().into()]
            }
            fn from_json(values: &[serde_json::Value]) -> Option<Self> {
                match values {
                    [key] => Some(Self(key.as_str()?.to_owned())),
                    _ => None,
                }
            }
        }
    )*};
}

string_cursor!(DesiredCursor => "desired_lrps", TaskCursor => "tasks", CellCursor => "cells");

impl Cursor for ActualLrpCursor {
    const LISTING: &'static str = "actual_lrps";
    fn to_json(&self) -> Vec<serde_json::Value> {
        vec![self.process_guid.clone().into(), self.index.into(), self.presence.into()]
    }
    fn from_json(values: &[serde_json::Value]) -> Option<Self> {
        match values {
            [guid, index, presence] => Some(ActualLrpCursor {
                process_guid: guid.as_str()?.to_owned(),
                index: index.as_i64()?,
                presence: presence.as_i64()?,
            }),
            _ => None,
        }
    }
}

/// The token that resumes a listing after `cursor`.
pub fn encode_token<K: Cursor>(cursor: &K) -> String {
    let mut values = vec![serde_json::Value::from(K::LISTING)];
    values.extend(cursor.to_json());
    let json = serde_json::Value::Array(values).to_string();
    json.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The cursor in `token`; `None` for the empty token (the first page).
pub fn decode_token<K: Cursor>(token: &str) -> Result<Option<K>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::Invalid(ValidationError::new("page_token", "is not a token this listing issued"));
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid())?;
    let values: Vec<serde_json::Value> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match values.split_first() {
        Some((listing, key)) if listing.as_str() == Some(K::LISTING) => K::from_json(key).map(Some).ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

/// What one list request asks for: at most `size` items (`None`: as many as fit), after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest<K> {
    /// The count limit, at most [`MAX_PAGE_SIZE`].
    pub size: Option<usize>,
    /// Where the page starts; `None` for the first page.
    pub after: Option<K>,
}

impl<K: Cursor> PageRequest<K> {
    /// The page of a request's `page_size` and `page_token`; [`Error::Invalid`] when either is
    /// out of bounds.
    pub fn new(page_size: u32, page_token: &str) -> Result<Self> {
        if page_size > MAX_PAGE_SIZE {
            return Err(Error::Invalid(ValidationError::new(
                "page_size",
                format!("must be between 0 and {MAX_PAGE_SIZE}"),
            )));
        }
        let size = (page_size > 0).then_some(page_size as usize);
        Ok(PageRequest { size, after: decode_token(page_token)? })
    }
}

/// The encoded size of `message` as one element of a repeated field (tag, length, body).
fn framed_len(message: &impl prost::Message) -> usize {
    let len = message.encoded_len();
    1 + prost::encoding::encoded_len_varint(len as u64) + len
}

/// Builds one page: reads the store through `fetch(after, limit)` batch by batch, converts each
/// item with `encode`, and stops at the request's count or before [`MAX_PAGE_BYTES`]. Returns
/// the items and the next page's token (empty when the listing is done).
pub async fn collect<D, P, K, F, Fut>(
    request: PageRequest<K>,
    mut fetch: F,
    key: impl Fn(&D) -> K,
    encode: impl Fn(D) -> P,
) -> Result<(Vec<P>, String)>
where
    K: Cursor,
    P: prost::Message,
    F: FnMut(Option<K>, usize) -> Fut,
    Fut: Future<Output = db::Result<Page<D, K>>>,
{
    let (mut items, mut bytes, mut after) = (Vec::new(), 0_usize, request.after);
    let mut batch = FIRST_BATCH;
    loop {
        // One row more than the count still allowed: when it comes back, the page is full and
        // more follow, without an empty last page.
        let want = match request.size {
            Some(size) => batch.min(size - items.len() + 1),
            None => batch,
        };
        let page = fetch(after.clone(), want).await?;
        for item in page.items {
            let full = request.size.is_some_and(|size| items.len() >= size);
            let item_key = key(&item);
            let message = encode(item);
            let len = framed_len(&message);
            if full || (!items.is_empty() && bytes + len > MAX_PAGE_BYTES) {
                // `after` is the key of the last item kept.
                return Ok((items, after.as_ref().map(encode_token).unwrap_or_default()));
            }
            bytes += len;
            items.push(message);
            after = Some(item_key);
        }
        let Some(resume) = page.resume_after else {
            return Ok((items, String::new()));
        };
        // The batch was full: more rows may follow (the last rows read may have been skipped as
        // undecodable, so resume after the last row read, not the last item kept).
        after = Some(resume);
        if request.size.is_some_and(|size| items.len() >= size) {
            return Ok((items, after.as_ref().map(encode_token).unwrap_or_default()));
        }
        batch = next_batch(batch, bytes, items.len());
    }
}

/// Largest encoded size of one streamed message's items (1 MiB): small enough that a stream
/// holds little in the server, big enough that framing is noise.
pub const STREAM_MESSAGE_BYTES: usize = 1024 * 1024;

/// Items per streamed message when the request's `page_size` is 0.
pub const STREAM_DEFAULT_ITEMS: usize = 1_000;

/// Messages queued between a stream's reader task and the gRPC stream.
pub const STREAM_QUEUE: usize = 1;

/// One message of a streamed listing: its items and the token after its last item (empty on
/// the last message).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPage<P> {
    /// At most the request's count, under [`STREAM_MESSAGE_BYTES`] unless one item is alone.
    pub items: Vec<P>,
    /// The token resuming after `items`, empty on the last message.
    pub next_page_token: String,
}

/// A streamed listing: a reader task that fetches keyset batches through `fetch(after, limit)`
/// and cuts them into messages of at most the request's count and [`STREAM_MESSAGE_BYTES`],
/// sending each through a channel of [`STREAM_QUEUE`] slot (so it waits while the client does
/// not read), and the receiving end as a stream. A store error ends the stream with that error;
/// the reader stops as soon as the stream is dropped.
pub fn stream<P, K, F, Fut>(
    request: PageRequest<K>,
    mut fetch: F,
    key: impl Fn(&P) -> K + Send + 'static,
) -> impl Stream<Item = Result<StreamPage<P>>> + Send + 'static
where
    P: prost::Message + 'static,
    K: Cursor + Send + Sync + 'static,
    F: FnMut(Option<K>, usize) -> Fut + Send + 'static,
    Fut: Future<Output = db::Result<Page<P, K>>> + Send,
{
    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
    let per_message = request.size.unwrap_or(STREAM_DEFAULT_ITEMS).max(1);
    tokio::spawn(async move {
        let mut after = request.after;
        let (mut items, mut bytes) = (Vec::new(), 0_usize);
        let (mut batch, mut seen_bytes, mut seen_items) = (FIRST_BATCH.min(per_message), 0_usize, 0_usize);
        loop {
            let page = match fetch(after.clone(), batch).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            for item in page.items {
                let len = framed_len(&item);
                if items.len() >= per_message || (!items.is_empty() && bytes + len > STREAM_MESSAGE_BYTES) {
                    let next_page_token = after.as_ref().map(encode_token).unwrap_or_default();
                    let full = StreamPage { items: std::mem::take(&mut items), next_page_token };
                    if tx.send(Ok(full)).await.is_err() {
                        return; // The client went away.
                    }
                    bytes = 0;
                }
                after = Some(key(&item));
                bytes += len;
                seen_bytes += len;
                seen_items += 1;
                items.push(item);
            }
            let Some(resume) = page.resume_after else {
                let _ = tx.send(Ok(StreamPage { items, next_page_token: String::new() })).await;
                return;
            };
            after = Some(resume);
            batch = stream_batch(per_message, seen_bytes, seen_items);
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The rows of a streamed listing's next store read: one message's worth, going by the average
/// item so far (the count asked for, or what fits [`STREAM_MESSAGE_BYTES`]), within
/// [`FIRST_BATCH`]..=[`MAX_BATCH`].
fn stream_batch(per_message: usize, bytes: usize, items: usize) -> usize {
    let fit = bytes.checked_div(items).map_or(MAX_BATCH, |average| STREAM_MESSAGE_BYTES / average.max(1) + 1);
    per_message.min(fit).clamp(FIRST_BATCH.min(per_message), MAX_BATCH)
}

/// The rows of the next store read: as many as the average item so far says still fit, within
/// [`FIRST_BATCH`]..=[`MAX_BATCH`]; doubled when nothing decoded yet.
fn next_batch(previous: usize, bytes: usize, items: usize) -> usize {
    if items == 0 {
        return (previous * 2).min(MAX_BATCH);
    }
    let average = (bytes / items).max(1);
    (MAX_PAGE_BYTES.saturating_sub(bytes) / average + 1).clamp(FIRST_BATCH, MAX_BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_name_their_listing() {
        let cursor = ActualLrpCursor { process_guid: "web-1".into(), index: 7, presence: 1 };
        let token = encode_token(&cursor);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
        assert_eq!(decode_token::<ActualLrpCursor>(&token).unwrap(), Some(cursor));
        assert_eq!(decode_token::<ActualLrpCursor>("").unwrap(), None);
        let desired = encode_token(&DesiredCursor("web-1".into()));
        assert_eq!(decode_token::<DesiredCursor>(&desired).unwrap(), Some(DesiredCursor("web-1".into())));
        for bad in [desired.as_str(), "zz", "abc", "5b5d", "é"] {
            let err = decode_token::<ActualLrpCursor>(bad).unwrap_err();
            assert!(err.to_string().contains("page_token"), "{bad}: {err}");
        }
        assert!(decode_token::<TaskCursor>(&desired).is_err());
    }

    #[test]
    fn page_sizes_above_the_maximum_are_invalid_and_zero_means_no_count_limit() {
        assert_eq!(PageRequest::<TaskCursor>::new(0, "").unwrap().size, None);
        assert_eq!(PageRequest::<TaskCursor>::new(10, "").unwrap().size, Some(10));
        assert_eq!(PageRequest::<TaskCursor>::new(MAX_PAGE_SIZE, "").unwrap().size, Some(MAX_PAGE_SIZE as usize));
        let err = PageRequest::<TaskCursor>::new(MAX_PAGE_SIZE + 1, "").unwrap_err();
        assert!(err.to_string().contains("page_size"), "{err}");
    }

    /// A store of `(key, item)` rows, `None` for an undecodable row, read the way the store's
    /// paged listings read.
    fn fake_fetch(
        rows: &[(&str, Option<String>)],
        after: Option<TaskCursor>,
        limit: usize,
    ) -> std::future::Ready<db::Result<Page<String, TaskCursor>>> {
        let after = after.map(|c| c.0).unwrap_or_default();
        let read: Vec<_> = rows.iter().filter(|(k, _)| *k > after.as_str()).take(limit.max(1)).collect();
        let resume_after = (read.len() == limit.max(1)).then(|| TaskCursor(read.last().unwrap().0.to_owned()));
        std::future::ready(Ok(Page { items: read.iter().filter_map(|(_, item)| item.clone()).collect(), resume_after }))
    }

    /// Every page of `rows` asked with `page_size`: each page's items and whether a token came.
    async fn pages(rows: &[(&str, Option<String>)], page_size: u32) -> Vec<(Vec<String>, bool)> {
        let (mut out, mut token) = (Vec::new(), String::new());
        loop {
            let request = PageRequest::<TaskCursor>::new(page_size, &token).unwrap();
            let (items, next) = collect(
                request,
                |after, limit| fake_fetch(rows, after, limit),
                |item: &String| TaskCursor(item.split(':').next().unwrap().to_owned()),
                |item| item,
            )
            .await
            .unwrap();
            let bytes: usize = items.iter().map(framed_len).sum();
            assert!(bytes <= MAX_PAGE_BYTES || items.len() == 1, "{bytes} bytes in {} items", items.len());
            let names = items.iter().map(|i| i.split(':').next().unwrap().to_owned()).collect();
            out.push((names, !next.is_empty()));
            if next.is_empty() {
                return out;
            }
            token = next;
        }
    }

    fn row(key: &'static str, bytes: usize) -> (&'static str, Option<String>) {
        (key, Some(format!("{key}:{}", "x".repeat(bytes))))
    }

    fn names(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[tokio::test]
    async fn pages_stop_at_the_count_without_an_empty_last_page() {
        let rows: Vec<_> = ["a", "b", "c", "d", "e"].into_iter().map(|k| row(k, 10)).collect();
        let expected = vec![(names(&["a", "b"]), true), (names(&["c", "d"]), true), (names(&["e"]), false)];
        assert_eq!(pages(&rows, 2).await, expected);
        assert_eq!(pages(&rows, 5).await, vec![(names(&["a", "b", "c", "d", "e"]), false)]);
        assert_eq!(pages(&rows, 0).await, vec![(names(&["a", "b", "c", "d", "e"]), false)]);
        assert_eq!(pages(&[], 0).await, vec![(vec![], false)]);
    }

    #[tokio::test]
    async fn pages_stop_before_the_byte_cap_and_a_huge_item_travels_alone() {
        const MB: usize = 1024 * 1024;
        let rows = vec![row("a", 3 * MB / 2), row("b", 3 * MB / 2), row("c", 3 * MB / 2), row("d", 10)];
        assert_eq!(pages(&rows, 0).await, vec![(names(&["a", "b"]), true), (names(&["c", "d"]), false)]);
        let rows = vec![row("a", 10), row("b", 5 * MB), row("c", 10)];
        let expected = vec![(names(&["a"]), true), (names(&["b"]), true), (names(&["c"]), false)];
        assert_eq!(pages(&rows, 0).await, expected);
        // Many small items: the batches grow, and the page still ends at the cap.
        let many: Vec<_> = (0..40_000).map(|i| (Box::leak(format!("k{i:06}").into_boxed_str()) as &str, 200)).collect();
        let rows: Vec<_> = many.iter().map(|(k, n)| row(k, *n)).collect();
        let got = pages(&rows, 0).await;
        assert!(got.len() > 1);
        assert_eq!(got.iter().map(|(items, _)| items.len()).sum::<usize>(), 40_000);
    }

    #[tokio::test]
    async fn undecodable_rows_move_the_cursor_without_ending_the_listing() {
        let mut rows: Vec<_> =
            (0..40).map(|i| (Box::leak(format!("k{i:02}").into_boxed_str()) as &str, None)).collect();
        rows.push(row("z", 10));
        assert_eq!(pages(&rows, 0).await, vec![(names(&["z"]), false)]);
        assert_eq!(pages(&rows, 1).await, vec![(names(&["z"]), false)]);
    }

    /// A shared store of `(key, item)` rows (`None`: undecodable) that counts the rows it has
    /// handed out, for the streamed listing.
    #[derive(Clone)]
    struct SharedRows {
        rows: std::sync::Arc<Vec<(String, Option<String>)>>,
        read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl SharedRows {
        fn new(rows: Vec<(String, Option<String>)>) -> Self {
            SharedRows { rows: std::sync::Arc::new(rows), read: Default::default() }
        }

        fn read(&self) -> usize {
            self.read.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn fetch(
            &self,
        ) -> impl FnMut(Option<TaskCursor>, usize) -> std::future::Ready<db::Result<Page<String, TaskCursor>>> + use<>
        {
            let this = self.clone();
            move |after, limit| {
                let after = after.map(|c| c.0).unwrap_or_default();
                let read: Vec<_> = this.rows.iter().filter(|(k, _)| *k > after).take(limit.max(1)).collect();
                this.read.fetch_add(read.len(), std::sync::atomic::Ordering::SeqCst);
                let resume_after = (read.len() == limit.max(1)).then(|| TaskCursor(read[read.len() - 1].0.clone()));
                let items = read.iter().filter_map(|(_, item)| item.clone()).collect();
                std::future::ready(Ok(Page { items, resume_after }))
            }
        }
    }

    fn item_key(item: &String) -> TaskCursor {
        #![allow(clippy::ptr_arg)] // `stream` passes the item itself
        TaskCursor(item.split(':').next().unwrap_or_default().to_owned())
    }

    /// Every message of a streamed listing of `rows`: (item keys, whether a token came).
    async fn streamed(rows: &SharedRows, page_size: u32) -> Vec<(Vec<String>, bool)> {
        use futures::StreamExt;
        let request = PageRequest::<TaskCursor>::new(page_size, "").unwrap();
        let messages: Vec<_> = stream(request, rows.fetch(), item_key).collect().await;
        messages
            .into_iter()
            .map(|message| {
                let message = message.unwrap();
                let bytes: usize = message.items.iter().map(framed_len).sum();
                assert!(bytes <= STREAM_MESSAGE_BYTES || message.items.len() == 1, "{bytes} bytes");
                let keys = message.items.iter().map(|i| item_key(i).0).collect();
                (keys, !message.next_page_token.is_empty())
            })
            .collect()
    }

    #[tokio::test]
    async fn a_stream_sends_every_item_once_in_messages_bounded_by_count_and_size() {
        let key = |i: usize| format!("k{i:06}");
        let small: Vec<_> = (0..12_345).map(|i| (key(i), Some(format!("{}:{}", key(i), "x".repeat(100))))).collect();
        let rows = SharedRows::new(small);
        let got = streamed(&rows, 1000).await;
        assert_eq!(got.len(), 13);
        assert!(got.iter().all(|(items, _)| items.len() <= 1000));
        let all: Vec<String> = got.iter().flat_map(|(items, _)| items.clone()).collect();
        assert_eq!(all, (0..12_345).map(key).collect::<Vec<_>>(), "every item once, in key order");
        // Every message but the last carries a token; the last does not.
        assert!(got[..12].iter().all(|(_, token)| *token) && !got[12].1);
        // page_size 0: the default count; big items: the size cap.
        assert!(streamed(&rows, 0).await.iter().all(|(items, _)| items.len() <= STREAM_DEFAULT_ITEMS));
        let big: Vec<_> = (0..10).map(|i| (key(i), Some(format!("{}:{}", key(i), "x".repeat(300_000))))).collect();
        let got = streamed(&SharedRows::new(big), 0).await;
        assert_eq!(got.iter().map(|(items, _)| items.len()).collect::<Vec<_>>(), [3, 3, 3, 1]);
        // Undecodable rows are skipped; an empty listing is one empty last message.
        let mixed = vec![("a".to_owned(), None), ("b".to_owned(), Some("b:1".to_owned())), ("c".to_owned(), None)];
        assert_eq!(streamed(&SharedRows::new(mixed), 1).await, vec![(names(&["b"]), false)]);
        assert_eq!(streamed(&SharedRows::new(Vec::new()), 0).await, vec![(vec![], false)]);
    }

    #[tokio::test]
    async fn a_stream_whose_client_stops_reading_stops_reading_the_store() {
        use futures::StreamExt;
        let key = |i: usize| format!("k{i:06}");
        let rows = SharedRows::new((0..100_000).map(|i| (key(i), Some(format!("{}:item", key(i))))).collect());
        let request = PageRequest::<TaskCursor>::new(100, "").unwrap();
        let mut messages = Box::pin(stream(request, rows.fetch(), item_key));
        let first = messages.next().await.unwrap().unwrap();
        assert_eq!(first.items.len(), 100);
        // The reader runs on while it can: give it every chance, then look at what it read.
        for _ in 0..1_000 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let read = rows.read();
        // The message sent, the one queued, the one being filled and one batch: a few hundred
        // rows of the hundred thousand.
        assert!(read <= 4 * 100 + MAX_BATCH.min(100), "{read} rows read while the client waited");
        // Reading on resumes the reader; dropping the stream stops it.
        let second = messages.next().await.unwrap().unwrap();
        assert_eq!(second.items[0], format!("{}:item", key(100)));
        drop(messages);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let after_drop = rows.read();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(rows.read(), after_drop, "the reader stopped with its stream");
        assert!(after_drop < 100_000);
    }

    #[test]
    fn batches_follow_the_average_item_size() {
        assert_eq!(next_batch(16, 0, 0), 32);
        assert_eq!(next_batch(16, 16 * 300, 16), MAX_BATCH);
        assert_eq!(next_batch(16, 16 * 1024 * 1024, 16), FIRST_BATCH);
        assert_eq!(next_batch(16, 16 * 100_000, 16), (MAX_PAGE_BYTES - 1_600_000) / 100_000 + 1);
    }
}
