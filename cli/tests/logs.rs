//! `diego logs` against a BBS: an unknown LRP or task exits 1 with one line, usage errors exit
//! 2, and a cell whose rep cannot be read is a warning, not a failure. The lines themselves are
//! covered end to end by `tests/tests/logs.rs`, with real cells.

#[path = "support/harness.rs"]
mod harness;

use harness::Bbs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_guid_exits_1_and_bad_flags_exit_2() {
    let bbs = Bbs::start().await;
    let line = bbs.diego(&["logs", "nope"]).await.fails(1).to_owned();
    assert_eq!(line, "error: ResourceNotFound: no desired lrp \"nope\"; see 'diego lrps'");
    let line = bbs.diego(&["logs", "--task", "nope", "-f"]).await.fails(1).to_owned();
    assert_eq!(line, "error: ResourceNotFound: no task \"nope\"; see 'diego tasks'");
    for args in [&["logs"][..], &["logs", "web", "--task", "t1"], &["logs", "--task", "t1", "--index", "0"]] {
        let out = bbs.diego(args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
    }
    let out = bbs.diego(&["logs", "web", "--recent=100001"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_whose_rep_cannot_be_read_is_a_warning() {
    let bbs = Bbs::start().await;
    bbs.diego(&["desire-lrp", "--guid", "web", "--command", "true"]).await.ok();
    bbs.register_cell("cell-1", 1024, 1024, 10).await;
    let out = bbs.diego(&["logs", "web", "--recent=5"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "", "no lines");
    for line in out.stderr.lines() {
        assert!(line.starts_with("warning: cannot read the logs of cell cell-1 (rep at 127.0.0.1:1801)"), "{out:?}");
    }
    bbs.stop().await;
}
