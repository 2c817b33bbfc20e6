// The request limits as data: consts, the three tables and their lookup. `proto::limits`
// re-exports all of it, and `build.rs` includes this file to resolve every field's rule once,
// at build time, into the wire schema the codec walks. Keep it free of crate paths.

/// The default largest request message a server accepts, in bytes (its `max_request_bytes`):
/// the gRPC default a client accepts too, so a request one server accepts can be relayed to the
/// next.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The smallest `max_request_bytes` a server may be configured with: components split the
/// batches they send other servers at three quarters of it (`bounds::CHUNK_BYTES`).
pub const MIN_REQUEST_BYTES_LIMIT: usize = 1024 * 1024;
/// The largest `max_request_bytes` a server may be configured with.
pub const MAX_REQUEST_BYTES_LIMIT: usize = 256 * 1024 * 1024;
/// Deepest nesting of messages in a request. Below prost's own recursion limit of 100, so a
/// deep request is refused here with a field path rather than by the decoder.
pub const MAX_MESSAGE_DEPTH: usize = 80;
/// Deepest action tree: `Action` nodes on the longest path from the root. Each level costs two
/// messages on the wire (`Action` and its `serial_action`), so the tree stays well inside
/// [`MAX_MESSAGE_DEPTH`].
pub const MAX_ACTION_DEPTH: usize = 32;
/// Most children of one serial, parallel or codependent action. A parallel action starts one
/// process per child, so this bounds what one node can ask a cell to fork at once (the cell's
/// `max_pids` bounds the rest).
pub const MAX_ACTIONS_PER_LIST: usize = 100;
/// Longest string field without a row of its own, in bytes: paths, URLs, names, guids.
/// `PATH_MAX` is 4096 on Linux.
pub const MAX_STRING_BYTES: usize = 4096;
/// Largest bytes field without a row of its own.
pub const MAX_BYTES_BYTES: usize = 128 * 1024;
/// Most elements of a repeated field or entries of a map without a row of its own.
pub const MAX_REPEATED: usize = 1024;
/// Longest single argument or environment entry a process can be given (Linux's
/// `MAX_ARG_STRLEN`, 32 pages, counting `NAME=` and the terminating NUL).
pub const MAX_ARG_BYTES: usize = 131_072;
/// Largest environment (`NAME=value` plus NUL, summed) of a desired LRP or task, and largest
/// arguments plus environment of one run action: the two together stay within half of
/// Linux's default `ARG_MAX` (2 MiB), so every process can be exec'd.
pub const MAX_ENV_BYTES: usize = 512 * 1024;
/// Longest time to live of any lease, in seconds (a day): the store refuses longer ones.
pub const MAX_LEASE_TTL_S: i64 = 24 * 60 * 60;
/// Largest Locket value: a cell presence is a few KiB, and every `FetchAll` returns every value.
pub const MAX_LOCKET_VALUE_BYTES: usize = 64 * 1024;
/// Most guids one listing filter names (process guids plus app guids): a paged listing binds
/// the whole filter in one statement.
pub const MAX_FILTER_GUIDS: usize = 10_000;
/// Most instances one desired LRP may ask for, whatever the operator configures.
pub const MAX_LRP_INSTANCES: i64 = 1_000_000;
/// Most items of one batch call (`DesireLRPsRequest.desired_lrps`, `StartActualLRPsRequest.starts`):
/// each batch is one transaction, and its per-item results one response.
pub const MAX_BATCH_ITEMS: usize = 1_000;
/// Most instances of all the desired LRPs of one `DesireLRPs` call together: the UNCLAIMED rows
/// that one transaction inserts (and holds in memory) for it.
pub const MAX_BATCH_INSTANCES: i64 = 100_000;
/// Longest timeout or interval, in milliseconds: 7 days.
pub const MAX_TIMEOUT_MS: i64 = 7 * 24 * 3600 * 1000;

/// Which characters a string field may hold. NUL is refused everywhere: PostgreSQL cannot store
/// it in text and `execve` cannot pass it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// No control characters but tab, newline and carriage return.
    Printable,
    /// Any character but NUL: text a process produced (task results, crash reasons).
    Raw,
    /// An environment variable name: printable, and no `=` (it would end the name).
    EnvName,
}

/// A length rule for a string or bytes field.
#[derive(Debug, Clone, Copy)]
pub struct StringLimit {
    /// `Message.field` or `*.field`.
    pub field: &'static str,
    /// Most bytes.
    pub max_bytes: usize,
    /// Which characters.
    pub text: Text,
    /// Why this limit.
    pub why: &'static str,
}

/// A count rule for a repeated field or map.
#[derive(Debug, Clone, Copy)]
pub struct CountLimit {
    /// `Message.field` or `*.field`.
    pub field: &'static str,
    /// Most elements.
    pub max: usize,
    /// Why this limit.
    pub why: &'static str,
}

/// A range rule for an integer field (each element, when repeated).
#[derive(Debug, Clone, Copy)]
pub struct RangeLimit {
    /// `Message.field` or `*.field`.
    pub field: &'static str,
    /// Least value.
    pub min: i64,
    /// Greatest value.
    pub max: i64,
    /// Why this range.
    pub why: &'static str,
}

const fn string(field: &'static str, max_bytes: usize, text: Text, why: &'static str) -> StringLimit {
    StringLimit { field, max_bytes, text, why }
}

const fn count(field: &'static str, max: usize, why: &'static str) -> CountLimit {
    CountLimit { field, max, why }
}

const fn range(field: &'static str, min: i64, max: i64, why: &'static str) -> RangeLimit {
    RangeLimit { field, min, max, why }
}

/// Longest identifier (guids, cell ids, domains, lease keys and owners): the `VARCHAR(255)`
/// columns they are stored in, so the database never refuses one.
pub const MAX_ID_BYTES: usize = 255;

/// String and bytes fields that differ from [`MAX_STRING_BYTES`] / [`Text::Printable`].
pub static STRINGS: &[StringLimit] = &[
    string("*.process_guid", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("*.process_guids", MAX_ID_BYTES, Text::Printable, "each names a process_guid"),
    string("*.task_guid", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("*.instance_guid", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("*.cell_id", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("*.domain", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("*.log_guid", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("*.availability_zone", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("*.epoch", MAX_ID_BYTES, Text::Printable, "stored in a VARCHAR(255) column"),
    string("Resource.key", MAX_ID_BYTES, Text::Printable, "a lease key, stored in a VARCHAR(255) column"),
    string("FetchRequest.key", MAX_ID_BYTES, Text::Printable, "a lease key"),
    string("Resource.owner", MAX_ID_BYTES, Text::Printable, "a lease owner, stored in a VARCHAR(255) column"),
    string("*.rootfs", 1024, Text::Printable, "stored in a VARCHAR(1024) column"),
    string("*.root_fs", 1024, Text::Printable, "as rootfs"),
    string("EnvironmentVariable.name", 1024, Text::EnvName, "a name ends at the first `=`; kept short"),
    string(
        "EnvironmentVariable.value",
        MAX_ARG_BYTES - 1024 - 2,
        Text::Printable,
        "`NAME=value` must fit MAX_ARG_STRLEN",
    ),
    string("RunAction.args", MAX_ARG_BYTES - 1, Text::Printable, "one argument must fit MAX_ARG_STRLEN"),
    string("*.annotation", 10 * 1024, Text::Raw, "Diego's maximumAnnotationLength"),
    string("File.content", 1024 * 1024, Text::Raw, "volume-mounted files total at most 1 MiB"),
    string("*.routes", 128 * 1024, Text::Raw, "Diego's maximumRouteLength (route values are opaque JSON)"),
    string("*.result", 10 * 1024, Text::Raw, "a task's result file is read up to 10 KiB, as in Diego"),
    string("*.error_message", 64 * 1024, Text::Raw, "process output; stored cut to 1024 characters"),
    string("*.failure_reason", 64 * 1024, Text::Raw, "process output; stored cut to 1024 characters"),
    string("*.crash_reason", 64 * 1024, Text::Raw, "process output; stored cut to 1024 characters"),
    string("*.rejection_reason", 64 * 1024, Text::Raw, "process output; stored cut to 1024 characters"),
    string("*.placement_error", 64 * 1024, Text::Raw, "stored cut to 1024 characters"),
    string("SharedDevice.mount_config", 64 * 1024, Text::Printable, "a JSON object for the volume driver"),
    string(
        "Resource.value",
        MAX_LOCKET_VALUE_BYTES,
        Text::Printable,
        "a Locket value (a cell presence as JSON); FetchAll returns every one",
    ),
    string("ExecInput.stdin", 64 * 1024, Text::Raw, "one chunk of a `diego ssh` session's standard input"),
    string("ExecStart.command", MAX_ARG_BYTES - 1, Text::Printable, "one argument must fit MAX_ARG_STRLEN"),
    string("*.image_password", MAX_STRING_BYTES, Text::Raw, "registry tokens may hold any printable byte"),
];

/// Repeated fields and maps that differ from [`MAX_REPEATED`].
pub static COUNTS: &[CountLimit] = &[
    count("*.ports", 100, "an instance exposes a handful of ports; Diego maps each to a host port"),
    count("*.placement_tags", 64, "each tag is matched against every cell on every placement"),
    count("*.optional_placement_tags", 64, "as placement_tags"),
    count("ParallelAction.actions", MAX_ACTIONS_PER_LIST, "one process per child, started at once"),
    count("SerialAction.actions", MAX_ACTIONS_PER_LIST, "as parallel actions"),
    count("CodependentAction.actions", MAX_ACTIONS_PER_LIST, "as parallel actions"),
    count("*.sidecars", 16, "each sidecar is a process tree of its own"),
    count("*.process_guids", MAX_FILTER_GUIDS, "one statement binds the whole filter"),
    count("DesireLRPsRequest.desired_lrps", MAX_BATCH_ITEMS, "one transaction and one response per batch"),
    count("StartActualLRPsRequest.starts", MAX_BATCH_ITEMS, "one transaction and one response per batch"),
    count("*.app_guids", MAX_FILTER_GUIDS, "one statement binds the whole filter"),
    count("LRPStartRequest.indices", MAX_LRP_INSTANCES as usize, "every index of the largest LRP"),
    count("RequestLRPAuctionsRequest.lrp_start_requests", 100_000, "one convergence pass may start many"),
    count("RequestTaskAuctionsRequest.task_start_requests", 100_000, "one convergence pass may start many"),
    count("Work.lrps", 10_000, "no cell runs more containers"),
    count("Work.tasks", 10_000, "no cell runs more containers"),
];

/// Integer fields with a range; fields without a row take any value of their wire type.
pub static RANGES: &[RangeLimit] = &[
    range("DesiredLRP.instances", 0, MAX_LRP_INSTANCES, "one row per index is allocated"),
    range("DesiredLRPUpdate.instances", 0, MAX_LRP_INSTANCES, "as DesiredLRP.instances"),
    range("*.memory_mb", 0, 16 * 1024 * 1024, "at most 16 TiB"),
    range("*.disk_mb", 0, 64 * 1024 * 1024, "at most 64 TiB"),
    range("*.max_pids", 0, 4_194_304, "Linux's pid_max ceiling"),
    range("*.cpu_weight", 0, 100, "a percentage of the cell's CPU shares, as in Diego"),
    range("*.ports", 1, 65_535, "a TCP or UDP port"),
    range("*.port", 1, 65_535, "a TCP or UDP port"),
    range("PortRange.start", 1, 65_535, "a TCP or UDP port"),
    range("PortRange.end", 1, 65_535, "a TCP or UDP port"),
    range("PortMapping.container_port", 0, 65_535, "a port, or 0 for none"),
    range("PortMapping.host_port", 0, 65_535, "a port, or 0 for none"),
    range("PortMapping.container_tls_proxy_port", 0, 65_535, "a port, or 0 for none"),
    range("PortMapping.host_tls_proxy_port", 0, 65_535, "a port, or 0 for none"),
    range("ModificationTag.index", 0, u32::MAX as i64, "a counter of updates"),
    range("*.index", 0, MAX_LRP_INSTANCES - 1, "an instance index of the largest LRP"),
    range("LogsRequest.recent", 0, 100_000, "lines a rep sends before following (issue 18)"),
    range("*.indices", 0, MAX_LRP_INSTANCES - 1, "an instance index of the largest LRP"),
    range("*.timeout_ms", 0, MAX_TIMEOUT_MS, "at most 7 days"),
    range("*.start_timeout_ms", 0, MAX_TIMEOUT_MS, "at most 7 days"),
    range("*.connect_timeout_ms", 0, MAX_TIMEOUT_MS, "at most 7 days"),
    range("*.request_timeout_ms", 0, MAX_TIMEOUT_MS, "at most 7 days"),
    range("*.interval_ms", 0, MAX_TIMEOUT_MS, "at most 7 days"),
    range("*.deprecated_start_timeout_s", 0, MAX_TIMEOUT_MS / 1000, "at most 7 days"),
    range("UpsertDomainRequest.ttl", 0, 366 * 24 * 3600, "at most a year; 0 is forever"),
    range("LockRequest.ttl_in_seconds", 0, MAX_LEASE_TTL_S, "a lease's longest life; the BBS bounds it by type"),
    range("TerminalSize.columns", 0, 65_535, "a terminal's columns (the kernel keeps 16 bits)"),
    range("TerminalSize.rows", 0, 65_535, "a terminal's rows (the kernel keeps 16 bits)"),
    range("*.page_size", 0, 100_000, "a page is bounded by bytes too"),
    range("*.crash_count", 0, i32::MAX as i64, "a count"),
    range("*.rejection_count", 0, i32::MAX as i64, "a count"),
    range("LogRateLimit.bytes_per_second", -1, i64::MAX, "-1 is unlimited"),
    range("ResourceLimits.nofile", 0, 1 << 20, "Linux's default nr_open"),
    range("ResourceLimits.nproc", 0, 4_194_304, "Linux's pid_max ceiling"),
];

/// Finds the row for `message.field`: the exact row, else the `*.field` row.
fn find<'a, T>(rows: &'a [T], key: impl Fn(&T) -> &str, message: &str, field: &str) -> Option<&'a T> {
    let exact = rows.iter().find(|row| key(row).split_once('.').is_some_and(|(m, f)| m == message && f == field));
    exact.or_else(|| rows.iter().find(|row| key(row).strip_prefix("*.") == Some(field)))
}

/// The length and character rule of `message.field` (short message name).
pub fn string_limit(message: &str, field: &str) -> (usize, Text) {
    find(STRINGS, |r| r.field, message, field).map_or((MAX_STRING_BYTES, Text::Printable), |r| (r.max_bytes, r.text))
}

/// The most bytes a bytes field `message.field` may hold.
pub fn bytes_limit(message: &str, field: &str) -> usize {
    find(STRINGS, |r| r.field, message, field).map_or(MAX_BYTES_BYTES, |r| r.max_bytes)
}

/// The most elements `message.field` may repeat.
pub fn count_limit(message: &str, field: &str) -> usize {
    find(COUNTS, |r| r.field, message, field).map_or(MAX_REPEATED, |r| r.max)
}

/// The range `message.field` must fall in, if it has one.
pub fn range_limit(message: &str, field: &str) -> Option<(i64, i64)> {
    find(RANGES, |r| r.field, message, field).map(|r| (r.min, r.max))
}
