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

use db::sql::page::{ActualLrpCursor, MAX_BATCH, Page};
use proto::models::ValidationError;

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

    #[test]
    fn batches_follow_the_average_item_size() {
        assert_eq!(next_batch(16, 0, 0), 32);
        assert_eq!(next_batch(16, 16 * 300, 16), MAX_BATCH);
        assert_eq!(next_batch(16, 16 * 1024 * 1024, 16), FIRST_BATCH);
        assert_eq!(next_batch(16, 16 * 100_000, 16), (MAX_PAGE_BYTES - 1_600_000) / 100_000 + 1);
    }
}
