//! Download and upload steps (`depot/steps/{download,upload}_step.go`).
//!
//! A download takes a slot of the executor-wide limiter, fetches `from` (`http://` or
//! `file://`) into a scratch file while hashing it, verifies the checksum (`md5`, `sha1`,
//! `sha256`), then places it at `to` inside the container: a tar (optionally gzipped) is
//! extracted into the directory `to` with the host's `tar`; any other file is copied to `to`
//! (or into it, when `to` is an existing directory). On a runtime without a filesystem (the sim)
//! the artifact is fetched and verified, then discarded. There is no download cache and no
//! `https://` (no TLS stack in this crate).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proto::pb::models::v1 as pb;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Ready, StepContext, StepError};

/// Most bytes an upload reads from the container.
const MAX_UPLOAD_BYTES: u64 = 1 << 30;

/// A running checksum.
enum Hasher {
    None,
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn new(algorithm: &str) -> Result<Self, StepError> {
        match algorithm.to_ascii_lowercase().as_str() {
            "" => Ok(Hasher::None),
            "md5" => Ok(Hasher::Md5(md5::Md5::new())),
            "sha1" => Ok(Hasher::Sha1(sha1::Sha1::new())),
            "sha256" => Ok(Hasher::Sha256(sha2::Sha256::new())),
            other => Err(StepError::failed(format!("invalid checksum algorithm: {other:?}"))),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::None => {}
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> Option<String> {
        let bytes: Vec<u8> = match self {
            Hasher::None => return None,
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// What was fetched: its size and the first bytes (to recognise archives).
struct Fetched {
    size: u64,
    head: Vec<u8>,
    checksum: Option<String>,
}

/// Fetches `from` into `scratch` (or nowhere), hashing as it goes.
async fn fetch(
    from: &str,
    scratch: Option<&Path>,
    mut hasher: Hasher,
    cancel: &CancellationToken,
) -> Result<Fetched, StepError> {
    let mut out = match scratch {
        Some(path) => Some(
            tokio::fs::File::create(path)
                .await
                .map_err(|e| StepError::failed(format!("cannot create download file: {e}")))?,
        ),
        None => None,
    };
    let mut fetched = Fetched { size: 0, head: Vec::new(), checksum: None };
    let mut consume = |chunk: &[u8], fetched: &mut Fetched| {
        hasher.update(chunk);
        if fetched.head.len() < 512 {
            let take = (512 - fetched.head.len()).min(chunk.len());
            fetched.head.extend_from_slice(&chunk[..take]);
        }
        fetched.size += chunk.len() as u64;
    };
    if let Some(path) = from.strip_prefix("file://") {
        let mut file =
            tokio::fs::File::open(path).await.map_err(|e| StepError::failed(format!("cannot open {path}: {e}")))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::select! {
                n = file.read(&mut buf) => n.map_err(|e| StepError::failed(format!("cannot read {path}: {e}")))?,
                () = cancel.cancelled() => return Err(StepError::Cancelled),
            };
            if n == 0 {
                break;
            }
            consume(&buf[..n], &mut fetched);
            if let Some(out) = out.as_mut() {
                out.write_all(&buf[..n]).await.map_err(|e| StepError::failed(format!("cannot write download: {e}")))?;
            }
        }
    } else if from.starts_with("http://") {
        let uri: hyper::Uri = from.parse().map_err(|e| StepError::failed(format!("invalid url {from:?}: {e}")))?;
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let response = tokio::select! {
            r = client.get(uri) => r.map_err(|e| StepError::failed(format!("request failed: {e}")))?,
            () = cancel.cancelled() => return Err(StepError::Cancelled),
        };
        if !response.status().is_success() {
            return Err(StepError::failed(format!("unexpected status code {}", response.status().as_u16())));
        }
        let mut body = response.into_body();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                () = cancel.cancelled() => return Err(StepError::Cancelled),
            };
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| StepError::failed(format!("reading response failed: {e}")))?;
            if let Ok(data) = frame.into_data() {
                consume(&data, &mut fetched);
                if let Some(out) = out.as_mut() {
                    out.write_all(&data).await.map_err(|e| StepError::failed(format!("cannot write download: {e}")))?;
                }
            }
        }
    } else {
        return Err(StepError::failed(format!("unsupported url {from:?}: only http:// and file:// are supported")));
    }
    if let Some(mut out) = out {
        out.flush().await.map_err(|e| StepError::failed(format!("cannot write download: {e}")))?;
    }
    fetched.checksum = hasher.finish();
    Ok(fetched)
}

fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

fn is_tar(head: &[u8]) -> bool {
    head.get(257..262) == Some(b"ustar")
}

/// Places the verified scratch file at `dest`: extracts archives into it, copies other files.
async fn install(scratch: &Path, dest: &Path, fetched: &Fetched, from: &str) -> Result<(), StepError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| StepError::failed(format!("{what}: {e}"));
    if is_gzip(&fetched.head) || is_tar(&fetched.head) {
        tokio::fs::create_dir_all(dest).await.map_err(|e| fail("cannot create destination", &e))?;
        let mut tar = tokio::process::Command::new("tar");
        tar.arg(if is_gzip(&fetched.head) { "-xzf" } else { "-xf" }).arg(scratch).arg("-C").arg(dest);
        let output = tar.output().await.map_err(|e| fail("cannot run tar", &e))?;
        if !output.status.success() {
            return Err(StepError::failed(format!(
                "extracting archive failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        return Ok(());
    }
    let target = if tokio::fs::metadata(dest).await.is_ok_and(|m| m.is_dir()) {
        let name = from.rsplit('/').next().filter(|n| !n.is_empty() && *n != "." && *n != "..").unwrap_or("artifact");
        dest.join(name)
    } else {
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(|e| fail("cannot create destination", &e))?;
        }
        dest.to_path_buf()
    };
    tokio::fs::copy(scratch, &target).await.map_err(|e| fail("cannot place download", &e))?;
    Ok(())
}

/// Runs a download action.
pub async fn download_step(
    ctx: &StepContext,
    download: &pb::DownloadAction,
    cancel: CancellationToken,
    mut ready: Ready,
) -> Result<(), StepError> {
    let _permit = tokio::select! {
        permit = ctx.downloads.acquire() => permit.map_err(|_| StepError::Cancelled)?,
        () = cancel.cancelled() => return Err(StepError::Cancelled),
    };
    let artifact = download.artifact.as_str();
    if !artifact.is_empty() {
        ctx.emit(&download.log_source, &format!("Downloading {artifact}..."));
    }
    let result = download_inner(ctx, download, &cancel).await;
    match &result {
        Ok(size) if !artifact.is_empty() => {
            ctx.emit(&download.log_source, &format!("Downloaded {artifact} ({})", human_size(*size)))
        }
        Err(StepError::Failed(_)) if !artifact.is_empty() => {
            ctx.emit(&download.log_source, &format!("Downloading {artifact} failed"))
        }
        _ => {}
    }
    result.map(|_| ready.fire())
}

async fn download_inner(
    ctx: &StepContext,
    download: &pb::DownloadAction,
    cancel: &CancellationToken,
) -> Result<u64, StepError> {
    let hasher = Hasher::new(&download.checksum_algorithm)?;
    if !download.checksum_algorithm.is_empty() && download.checksum_value.is_empty() {
        return Err(StepError::failed("checksum value missing"));
    }
    let dest = ctx
        .runtime
        .host_path(&ctx.guid, &download.to)
        .map_err(|e| StepError::failed(format!("invalid destination: {e}")))?;
    let scratch: Option<PathBuf> = match &dest {
        Some(_) => {
            tokio::fs::create_dir_all(&ctx.scratch_dir)
                .await
                .map_err(|e| StepError::failed(format!("cannot create scratch directory: {e}")))?;
            Some(ctx.scratch_dir.join(format!("download-{}", uuid::Uuid::new_v4().simple())))
        }
        None => None,
    };
    let result = async {
        let fetched = fetch(&download.from, scratch.as_deref(), hasher, cancel).await?;
        if let Some(actual) = &fetched.checksum {
            let expected = download.checksum_value.to_ascii_lowercase();
            if *actual != expected {
                return Err(StepError::failed(format!(
                    "checksum verification failed: expected {} {expected}, got {actual}",
                    download.checksum_algorithm.to_ascii_lowercase()
                )));
            }
        }
        if let (Some(dest), Some(scratch)) = (&dest, &scratch) {
            install(scratch, dest, &fetched, &download.from).await?;
        }
        Ok(fetched.size)
    }
    .await;
    if let Some(scratch) = scratch {
        let _ = tokio::fs::remove_file(scratch).await;
    }
    result
}

/// Runs an upload action: POSTs the container file `from` to the `http://` URL `to`.
pub async fn upload_step(
    ctx: &StepContext,
    upload: &pb::UploadAction,
    cancel: CancellationToken,
    mut ready: Ready,
) -> Result<(), StepError> {
    let Some(path) = ctx
        .runtime
        .host_path(&ctx.guid, &upload.from)
        .map_err(|e| StepError::failed(format!("invalid source: {e}")))?
    else {
        ready.fire();
        return Ok(());
    };
    if !upload.to.starts_with("http://") {
        return Err(StepError::failed(format!("unsupported url {:?}: only http:// is supported", upload.to)));
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| StepError::failed(format!("cannot open {}: {e}", upload.from)))?;
    let mut data = Vec::new();
    file.take(MAX_UPLOAD_BYTES)
        .read_to_end(&mut data)
        .await
        .map_err(|e| StepError::failed(format!("cannot read {}: {e}", upload.from)))?;
    if !upload.artifact.is_empty() {
        ctx.emit(&upload.log_source, &format!("Uploading {}...", upload.artifact));
    }
    let request = hyper::Request::post(upload.to.as_str())
        .body(Full::new(Bytes::from(data)))
        .map_err(|e| StepError::failed(format!("invalid url {:?}: {e}", upload.to)))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::select! {
        r = client.request(request) => r.map_err(|e| StepError::failed(format!("upload failed: {e}")))?,
        () = cancel.cancelled() => return Err(StepError::Cancelled),
    };
    if !response.status().is_success() {
        return Err(StepError::failed(format!("upload failed: unexpected status code {}", response.status().as_u16())));
    }
    ready.fire();
    Ok(())
}

/// `1.5M`, `12K`, `300B`: the size in Diego's download log lines.
fn human_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            let text = format!("{value:.1}");
            return format!("{}{unit}", text.trim_end_matches(".0"));
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashers_produce_lowercase_hex() {
        let mut sha = Hasher::new("SHA256").expect("sha256");
        sha.update(b"abc");
        assert_eq!(sha.finish().as_deref(), Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
        let mut md5 = Hasher::new("md5").expect("md5");
        md5.update(b"abc");
        assert_eq!(md5.finish().as_deref(), Some("900150983cd24fb0d6963f7d28e17f72"));
        let mut sha1 = Hasher::new("sha1").expect("sha1");
        sha1.update(b"abc");
        assert_eq!(sha1.finish().as_deref(), Some("a9993e364706816aba3e25717850c26c9cd0d89d"));
        assert!(Hasher::new("crc32").is_err());
        assert_eq!(Hasher::new("").expect("none").finish(), None);
    }

    #[test]
    fn sizes_read_like_diego_logs() {
        assert_eq!(human_size(300), "300B");
        assert_eq!(human_size(12 * 1024), "12K");
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5M");
    }

    #[test]
    fn archives_are_recognised_by_their_magic() {
        assert!(is_gzip(&[0x1f, 0x8b, 8]));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(is_tar(&tar));
        assert!(!is_tar(b"hello"));
    }
}
