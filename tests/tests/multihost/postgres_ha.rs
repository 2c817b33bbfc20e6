//! A highly available database under the cluster: a PostgreSQL primary and its synchronous
//! streaming standby on two hosts (tests/src/hosts/postgres.rs). The primary crashes while
//! clients write; the standby, promoted, must hold every write the primary acknowledged.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::PgConnection;
use tests::eventually::eventually;
use tests::hosts::Network;
use tests::hosts::postgres::{self, PgCluster};

/// The primary's host, then the standby's.
const PG_1: &str = "pg-1";
const PG_2: &str = "pg-2";
/// The host the clients write from.
const CLIENTS: &str = "ops";
/// The database the writes go to.
const DB: &str = "ha";
/// How many writers insert at once, each its own rows, one by one.
const WRITERS: i32 = 2;
/// Acknowledged writes before the primary is crashed.
const BEFORE_CRASH: usize = 300;

/// What one writer saw: the rows the primary acknowledged, and the one it was inserting when
/// its connection broke (committed or not: nobody told it).
struct Written {
    acknowledged: Vec<(i32, i64)>,
    in_doubt: Option<(i32, i64)>,
}

/// Inserts `(writer, 0)`, `(writer, 1)`, ... into `writes` over `conn`, one transaction each,
/// until one fails.
async fn write_until_failure(mut conn: PgConnection, writer: i32, acks: Arc<AtomicUsize>) -> Written {
    let mut acknowledged = Vec::new();
    for seq in 0_i64.. {
        let insert =
            sqlx::query("INSERT INTO writes (writer, seq) VALUES ($1, $2)").bind(writer).bind(seq).execute(&mut conn);
        match tokio::time::timeout(Duration::from_secs(30), insert).await {
            Ok(Ok(_)) => {
                acknowledged.push((writer, seq));
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) | Err(_) => return Written { acknowledged, in_doubt: Some((writer, seq)) },
        }
    }
    Written { acknowledged, in_doubt: None }
}

/// Writers stream inserts to the primary from another host; the primary crashes (SIGKILL, every
/// process) in the middle; the standby is promoted. Every write the primary acknowledged is on
/// the promoted node (synchronous replication: a commit is acknowledged once the standby flushed
/// it), nothing that was never sent is, the promoted node takes writes, and the libpq
/// multi-host URL now leads to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_streaming_standby_keeps_every_acknowledged_commit() {
    let test = "postgres_streaming_standby_keeps_every_acknowledged_commit";
    if !postgres::available(test) {
        return;
    }
    let Some(net) = Network::start(test, &[PG_1, PG_2, CLIENTS], 11) else { return };
    let mut cluster = PgCluster::start(&net, PG_1, PG_2).await;
    assert_eq!(cluster.primary(), PG_1);
    assert!(!cluster.is_in_recovery(&net, PG_1).await, "{PG_1} starts as the primary");
    assert!(cluster.is_in_recovery(&net, PG_2).await, "{PG_2} starts as a standby");
    cluster.create_database(&net, DB).await;
    {
        let mut conn = cluster.connect(&net, CLIENTS, PG_1, DB).await.expect("connect to the primary");
        sqlx::raw_sql("CREATE TABLE writes (writer integer NOT NULL, seq bigint NOT NULL, PRIMARY KEY (writer, seq))")
            .execute(&mut conn)
            .await
            .expect("create the table");
    }

    // Each writer on a connection of its own, from the clients' host to the primary.
    let acks = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let conn = cluster.connect(&net, CLIENTS, PG_1, DB).await.expect("a writer connects to the primary");
        writers.push(tokio::spawn(write_until_failure(conn, w, acks.clone())));
    }
    eventually(&format!("{BEFORE_CRASH} acknowledged writes"), postgres::PATIENCE, || {
        let acks = acks.clone();
        async move { (acks.load(Ordering::Relaxed) >= BEFORE_CRASH).then_some(()) }
    })
    .await;
    cluster.kill_primary();
    let mut acknowledged = BTreeSet::new();
    let mut in_doubt = BTreeSet::new();
    for writer in writers {
        let written = tokio::time::timeout(postgres::PATIENCE, writer)
            .await
            .expect("every writer notices the crash")
            .expect("a writer");
        acknowledged.extend(written.acknowledged);
        in_doubt.extend(written.in_doubt);
    }
    assert!(acknowledged.len() >= BEFORE_CRASH, "{} writes acknowledged", acknowledged.len());
    assert_eq!(in_doubt.len(), WRITERS as usize, "every writer was cut off in the middle of its stream");

    assert!(cluster.is_in_recovery(&net, PG_2).await, "{PG_2} is still a standby before its promotion");
    let promotion = cluster.promote_standby(&net).await;
    assert_eq!(cluster.primary(), PG_2);
    assert!(!cluster.is_in_recovery(&net, PG_2).await, "{PG_2} is the primary after its promotion");

    let mut conn = cluster.connect(&net, CLIENTS, PG_2, DB).await.expect("connect to the promoted node");
    let rows: Vec<(i32, i64)> =
        sqlx::query_as("SELECT writer, seq FROM writes").fetch_all(&mut conn).await.expect("read the writes");
    let present: BTreeSet<(i32, i64)> = rows.into_iter().collect();
    let lost: Vec<_> = acknowledged.difference(&present).collect();
    assert!(lost.is_empty(), "acknowledged writes missing on the promoted node: {lost:?}");
    let unexplained: Vec<_> = present.iter().filter(|r| !acknowledged.contains(r) && !in_doubt.contains(r)).collect();
    assert!(unexplained.is_empty(), "rows on the promoted node that no writer sent: {unexplained:?}");
    let in_doubt_committed = present.iter().filter(|r| in_doubt.contains(r)).count();

    // The promoted node takes writes, and the multi-host URL leads a libpq client to it.
    let write =
        sqlx::query("INSERT INTO writes (writer, seq) VALUES ($1, $2)").bind(WRITERS).bind(0_i64).execute(&mut conn);
    tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("a write on the promoted node commits within 10 s (no standby to wait for)")
        .expect("a write on the promoted node");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM writes WHERE writer = $1")
        .bind(WRITERS)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(after, 1);
    let via_url = cluster
        .psql(&net, CLIENTS, &cluster.url(DB), "SELECT inet_server_addr()::text || ' ' || pg_is_in_recovery()::text")
        .await
        .expect("psql through the multi-host URL");
    assert_eq!(via_url, format!("{}/32 false", net.host(PG_2).ip), "the multi-host URL leads to the promoted node");

    eprintln!(
        "multihost: postgres failover: promotion took {} ms, {} acknowledged writes, {} lost ({} in doubt at the crash, {} of them committed)",
        promotion.as_millis(),
        acknowledged.len(),
        lost.len(),
        in_doubt.len(),
        in_doubt_committed
    );
}
