//! Task completion callbacks (bbs.md 3.5, Diego's `taskworkpool`): a bounded pool of workers
//! that POST the JSON callback body of a completed task to its `completion_callback_url`, then
//! delete it.
//!
//! Controllers [`Callbacks::enqueue`] completed tasks; [`spawn_workers`] drains the queue and
//! runs at most `workers` callbacks at once. Per task ([`handle_completed_task`]):
//!
//! 1. ResolvingTask through the task controller (fenced, with its `TaskChanged` event). If that
//!    fails with InvalidStateTransition another resolver has the task; it is skipped. Any other
//!    failure (not the leader, store down) is logged and the task is left for convergence.
//! 2. POST `{"task_guid","failed","failure_reason","result","annotation","created_at"}` with
//!    `Content-Type: application/json` (as Diego, `annotation` and `created_at` are omitted when
//!    empty / zero), each attempt bounded by the configured timeout.
//! 3. Up to [`MAX_ATTEMPTS`] attempts, repeated **only** after a timeout or a connection error
//!    (refused, reset, closed before the response).
//! 4. Any status except 503 / 504 counts as handled: DeleteTask (with its `TaskRemoved` event).
//!    On 503 / 504, after the attempts run out, or on any other error the task is left
//!    RESOLVING; convergence demotes it back to COMPLETED later and it is retried.
//!
//! `http://` and `https://` URLs are supported. An https callback verifies the receiver's
//! certificate (its DNS or IP SANs against the URL's host) against the CA bundle of the BBS's
//! `callback_ca_file`, else against the cluster CA of its own mutual TLS (`[tls] ca`); TLS 1.2
//! and 1.3, ALPN `http/1.1`, rustls with the ring provider. A receiver that asks for a client
//! certificate gets the BBS's own (`[tls] cert`), when it has one. The files are read once at
//! start. With neither CA (`--insecure-plaintext` and no `callback_ca_file`) an https URL is
//! logged naming `callback_ca_file` and left RESOLVING, as is any other unusable URL. A receiver
//! whose certificate does not verify counts as a connection error: tried [`MAX_ATTEMPTS`]
//! times, then left RESOLVING, with the reason logged. Every callback is logged with its task
//! guid and outcome and counted in `bbs_task_callbacks_total{outcome}`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use proto::error::ErrorCode;
use proto::models::Task;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod client;

use crate::controllers::Context;
use crate::controllers::tasks::Tasks;
pub use client::{CallbackConnector, CallbackTls, HttpClient, http_client, load_ca_bundle};

/// Attempts per callback (Diego's `MAX_CB_RETRIES`).
pub const MAX_ATTEMPTS: u32 = 3;

/// The handle controllers enqueue completed tasks on.
#[derive(Clone)]
pub struct Callbacks {
    tx: mpsc::UnboundedSender<Task>,
}

impl Callbacks {
    /// A handle and the receiving end the worker pool drains.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Task>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// Queues a completed task whose definition has a callback URL.
    pub fn enqueue(&self, task: Task) {
        if task.definition.completion_callback_url().is_empty() {
            return;
        }
        // A closed channel means the process is shutting down; convergence retries later.
        let _ = self.tx.send(task);
    }
}

/// Runs the callback pool until `shutdown` or until every [`Callbacks`] handle is dropped.
///
/// A dispatcher takes tasks off `rx` and runs each callback on its own tokio task, at most
/// `workers` at once. When the queue closes it waits for the callbacks in flight; on `shutdown`
/// it aborts them instead (a task then stays COMPLETED or RESOLVING, and convergence retries
/// it, so a callback may be delivered twice: receivers must be idempotent, as with Diego).
/// Callbacks are sent with `client` ([`HttpClient::new`]; https needs its [`CallbackTls`]).
pub fn spawn_workers(
    ctx: Context,
    mut rx: mpsc::UnboundedReceiver<Task>,
    workers: usize,
    timeout: Duration,
    client: HttpClient,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(workers.max(1)));
        let mut running = JoinSet::new();
        loop {
            let task = tokio::select! {
                _ = shutdown.cancelled() => break,
                task = rx.recv() => match task {
                    Some(task) => task,
                    None => {
                        // The queue is closed: finish what runs, unless told to stop first.
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = async { while running.join_next().await.is_some() {} } => return,
                        }
                    }
                },
            };
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // never closed
                },
            };
            let (ctx, client) = (ctx.clone(), client.clone());
            running.spawn(async move {
                let _permit = permit;
                handle_completed_task(&ctx, &client, &task, timeout).await;
            });
            // Reap finished callbacks so the set does not grow with the queue's history.
            while running.try_join_next().is_some() {}
        }
        let aborted = running.len();
        running.shutdown().await;
        tracing::info!(aborted, "callback workers stopped");
    })
}

/// What became of one callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// ResolvingTask said InvalidStateTransition or ResourceNotFound: another resolver has the
    /// task, or it is gone. Nothing was sent.
    Skipped,
    /// ResolvingTask failed otherwise (not the leader, store trouble). Nothing was sent.
    ResolveFailed,
    /// The URL is not a usable `http://` or `https://` URL (or https without a CA); left
    /// RESOLVING.
    Unsupported,
    /// The receiver answered `status` (not 503 / 504) and the task was deleted.
    Delivered {
        /// The response status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The receiver answered `status` (not 503 / 504) but DeleteTask failed; left RESOLVING.
    DeleteFailed {
        /// The response status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The receiver answered 503 or 504; left RESOLVING.
    Unavailable {
        /// The response status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// Every attempt timed out or could not connect; left RESOLVING.
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
    },
    /// An error that is not worth repeating; left RESOLVING.
    Failed {
        /// Attempts made.
        attempts: u32,
    },
}

impl Outcome {
    /// The `outcome` label of `bbs_task_callbacks_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Skipped => "skipped",
            Self::ResolveFailed => "resolve_failed",
            Self::Unsupported => "unsupported_url",
            Self::Delivered { .. } => "delivered",
            Self::DeleteFailed { .. } => "delete_failed",
            Self::Unavailable { .. } => "unavailable",
            Self::RetriesExhausted { .. } => "retries_exhausted",
            Self::Failed { .. } => "failed",
        }
    }
}

/// The JSON body of a callback (Diego's `TaskCallbackResponse`).
#[derive(Debug, serde::Serialize)]
struct CallbackBody<'a> {
    task_guid: &'a str,
    failed: bool,
    failure_reason: &'a str,
    result: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    annotation: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    created_at: i64,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Resolves, delivers and deletes one completed task (see the module docs), logging and
/// counting the outcome.
pub async fn handle_completed_task(ctx: &Context, client: &HttpClient, task: &Task, timeout: Duration) -> Outcome {
    let outcome = resolve_and_deliver(ctx, client, task, timeout).await;
    let guid = task.task_guid.as_str();
    let url = task.definition.completion_callback_url();
    match outcome {
        Outcome::Skipped => tracing::info!(
            task_guid = guid,
            outcome = outcome.label(),
            "task already resolving or gone; skipping its callback"
        ),
        Outcome::Delivered { status, attempts } => {
            tracing::info!(
                task_guid = guid,
                callback_url = url,
                status,
                attempts,
                outcome = outcome.label(),
                "task callback delivered; task deleted"
            );
        }
        Outcome::Unavailable { status, attempts } => {
            tracing::warn!(
                task_guid = guid,
                callback_url = url,
                status,
                attempts,
                outcome = outcome.label(),
                "task callback receiver unavailable; left resolving"
            );
        }
        Outcome::DeleteFailed { status, attempts } => {
            tracing::warn!(
                task_guid = guid,
                callback_url = url,
                status,
                attempts,
                outcome = outcome.label(),
                "task callback delivered but the task could not be deleted"
            );
        }
        Outcome::RetriesExhausted { attempts } | Outcome::Failed { attempts } => {
            tracing::warn!(
                task_guid = guid,
                callback_url = url,
                attempts,
                outcome = outcome.label(),
                "task callback failed; left resolving"
            );
        }
        Outcome::ResolveFailed | Outcome::Unsupported => {
            tracing::warn!(task_guid = guid, callback_url = url, outcome = outcome.label(), "task callback not sent");
        }
    }
    metrics::counter!("bbs_task_callbacks_total", "outcome" => outcome.label()).increment(1);
    outcome
}

async fn resolve_and_deliver(ctx: &Context, client: &HttpClient, task: &Task, timeout: Duration) -> Outcome {
    let tasks = Tasks(ctx);
    let guid = &task.task_guid;
    if let Err(e) = tasks.resolving(guid).await {
        return match e.code() {
            ErrorCode::InvalidStateTransition | ErrorCode::ResourceNotFound => Outcome::Skipped,
            _ => {
                tracing::warn!(task_guid = %guid, error = %e, "cannot mark the task resolving");
                Outcome::ResolveFailed
            }
        };
    }

    let url = task.definition.completion_callback_url();
    let uri = match url.parse::<hyper::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => uri,
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {
            if !client.supports_https() {
                tracing::warn!(
                    task_guid = %guid,
                    callback_url = url,
                    "https callback urls need callback_ca_file (or the [tls] ca of mutual TLS) in the BBS configuration"
                );
                return Outcome::Unsupported;
            }
            uri
        }
        Ok(_) => {
            tracing::warn!(task_guid = %guid, callback_url = url, "callback url is not an http or https url");
            return Outcome::Unsupported;
        }
        Err(e) => {
            tracing::warn!(task_guid = %guid, callback_url = url, error = %e, "callback url cannot be parsed");
            return Outcome::Unsupported;
        }
    };
    let body = CallbackBody {
        task_guid: guid.as_str(),
        failed: task.failed,
        failure_reason: &task.failure_reason,
        result: &task.result,
        annotation: &task.definition.as_pb().annotation,
        created_at: task.created_at,
    };
    let body = match serde_json::to_vec(&body) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            tracing::warn!(task_guid = %guid, error = %e, "cannot encode the callback body");
            return Outcome::Failed { attempts: 0 };
        }
    };

    let mut attempts = 0;
    let mut last_error = String::new();
    while attempts < MAX_ATTEMPTS {
        attempts += 1;
        let request = hyper::Request::post(uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()));
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                tracing::warn!(task_guid = %guid, callback_url = url, error = %e, "cannot build the callback request");
                return Outcome::Failed { attempts };
            }
        };
        let status = match tokio::time::timeout(timeout, client.inner.request(request)).await {
            Ok(Ok(response)) => response.status().as_u16(),
            Ok(Err(e)) if is_connection_error(&e) => {
                last_error = error_chain(&e);
                tracing::debug!(task_guid = %guid, callback_url = url, attempts, error = %last_error, "callback connection failed; retrying");
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(task_guid = %guid, callback_url = url, attempts, error = %e, "callback request failed");
                return Outcome::Failed { attempts };
            }
            Err(_) => {
                last_error = format!("timed out after {timeout:?}");
                tracing::debug!(task_guid = %guid, callback_url = url, attempts, "callback timed out; retrying");
                continue;
            }
        };
        if status == 503 || status == 504 {
            return Outcome::Unavailable { status, attempts };
        }
        return match tasks.delete(guid).await {
            Ok(()) => Outcome::Delivered { status, attempts },
            Err(e) => {
                tracing::warn!(task_guid = %guid, error = %e, "cannot delete the resolved task");
                Outcome::DeleteFailed { status, attempts }
            }
        };
    }
    tracing::warn!(task_guid = %guid, callback_url = url, attempts, error = %last_error, "callback attempts exhausted");
    Outcome::RetriesExhausted { attempts }
}

/// An error and its sources, joined by `: ` (a TLS failure is a few sources down).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a client error is one Diego repeats: the connection could not be made, or it was
/// closed or reset before a response arrived.
fn is_connection_error(error: &hyper_util::client::legacy::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionRefused, ConnectionReset, UnexpectedEof};
    if error.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>()
            && (hyper_error.is_incomplete_message() || hyper_error.is_closed() || hyper_error.is_canceled())
        {
            return true;
        }
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>()
            && matches!(
                io_error.kind(),
                BrokenPipe | ConnectionAborted | ConnectionRefused | ConnectionReset | UnexpectedEof
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use svc::config::tls::TlsConfig;

    use crate::config::BbsConfig;

    use super::*;

    fn temp(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("bbs-callbacks-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn plaintext(callback_ca_file: PathBuf) -> BbsConfig {
        BbsConfig { tls: TlsConfig::insecure_plaintext(), callback_ca_file, ..BbsConfig::default() }
    }

    #[test]
    fn callback_ca_file_must_be_a_pem_ca_bundle_naming_the_file() {
        let missing = std::env::temp_dir().join("bbs-callbacks-no-such-ca.pem");
        let error = plaintext(missing.clone()).validate().unwrap_err().to_string();
        assert!(error.contains("callback_ca_file") && error.contains(&missing.display().to_string()), "{error}");

        let garbage = temp("garbage.pem", "not a certificate\n");
        let error = plaintext(garbage.clone()).validate().unwrap_err().to_string();
        assert!(error.contains("callback_ca_file") && error.contains("holds no certificate"), "{error}");
        assert!(error.contains(&garbage.display().to_string()), "{error}");
        let _ = std::fs::remove_file(garbage);

        let pki = svc::pki::Pki::for_tests();
        plaintext(pki.ca_path()).validate().expect("the test CA is a CA bundle");
        plaintext(PathBuf::new()).validate().expect("empty means none");
    }

    #[test]
    fn https_needs_a_callback_ca_or_mutual_tls() {
        assert!(!http_client().supports_https());
        let none = CallbackTls::from_config(&plaintext(PathBuf::new())).unwrap();
        assert!(!HttpClient::new(&none).supports_https());
        let pki = svc::pki::Pki::for_tests();
        let ca_file = CallbackTls::from_config(&plaintext(pki.ca_path())).unwrap();
        assert!(HttpClient::new(&ca_file).supports_https());
        let mutual = BbsConfig { tls: pki.test_tls(svc::identity::Role::Bbs, ""), ..BbsConfig::default() };
        let cluster = CallbackTls::from_config(&mutual).unwrap();
        let config = cluster.config.as_ref().expect("the cluster CA is used");
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(config.client_auth_cert_resolver.has_certs(), "the BBS's own certificate is offered");
    }
}
