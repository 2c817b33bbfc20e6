//! Issue 19 item 3 on every backend (SQLite always; PostgreSQL and MySQL when
//! `DIEGO_TEST_POSTGRES_URL` / `DIEGO_TEST_MYSQL_URL` are set): `diego export` of a cluster, its
//! database lost (a second BBS on a fresh, empty database), `diego apply -f` of the export
//! restores the same state, compared field by field (desired LRPs as whole messages, modification
//! tags aside; pending tasks' definitions; domains). Applying again changes nothing, `--dry-run`
//! changes nothing, `--prune` removes only what the file's domains no longer hold, an updatable
//! change is an update and a run-info change is refused unless `--replace`. And `diego lrp GUID
//! --json` fed to `diego desire-lrp --file - --guid NEW` desires an identical LRP (and, edited, to
//! `diego update-lrp GUID --file -` updates it).

#[path = "support/harness.rs"]
mod harness;

use std::collections::BTreeMap;

use db::Backend;
use harness::Bbs;
use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

/// The every-field desired LRP (`fixtures/every_field_lrp.yaml`, domain `roundtrip`).
const EVERY_FIELD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/every_field_lrp.yaml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_wipe_apply_restores_the_state_on_sqlite() {
    export_wipe_apply(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_wipe_apply_restores_the_state_on_postgres() {
    export_wipe_apply(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_wipe_apply_restores_the_state_on_mysql() {
    export_wipe_apply(Backend::Mysql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrp_json_desires_an_identical_copy_on_sqlite() {
    lrp_json_desires_a_copy(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrp_json_desires_an_identical_copy_on_postgres() {
    lrp_json_desires_a_copy(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lrp_json_desires_an_identical_copy_on_mysql() {
    lrp_json_desires_a_copy(Backend::Mysql).await;
}

/// Desires the cluster the tests export: the every-field LRP, two LRPs from flags (one with no
/// instances), two domains (one expiring), two pending tasks.
async fn populate(bbs: &Bbs) {
    bbs.diego(&["desire-lrp", "--file", EVERY_FIELD]).await.ok();
    let web = ["desire-lrp", "--guid", "web", "--command", "exec ./server", "--instances", "2", "--port", "8080"];
    bbs.diego(&web).await.ok();
    let idle = ["desire-lrp", "--guid", "idle", "--command", "sleep 1", "--instances", "0", "--domain", "batch"];
    bbs.diego(&idle).await.ok();
    bbs.diego(&["upsert-domain", "diego"]).await.ok();
    bbs.diego(&["upsert-domain", "batch", "--ttl", "3600"]).await.ok();
    bbs.diego(&["desire-task", "--guid", "report", "--command", "echo 42", "--result-file", "/tmp/r"]).await.ok();
    bbs.diego(&["desire-task", "--guid", "nightly", "--command", "true", "--domain", "batch"]).await.ok();
}

/// Every desired LRP by guid, modification tags cleared.
async fn desired_lrps(bbs: &Bbs) -> BTreeMap<String, pb::DesiredLrp> {
    let response = bbs.client().await.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    response
        .desired_lrps
        .into_iter()
        .map(|lrp| (lrp.process_guid.clone(), pb::DesiredLrp { modification_tag: None, ..lrp }))
        .collect()
}

/// Every modification tag by guid: what shows whether anything was written.
async fn modification_tags(bbs: &Bbs) -> BTreeMap<String, Option<pb::ModificationTag>> {
    let response = bbs.client().await.desired_lr_ps(api::DesiredLrPsRequest::default()).await.unwrap().into_inner();
    response.desired_lrps.into_iter().map(|lrp| (lrp.process_guid, lrp.modification_tag)).collect()
}

/// Every pending task's guid, domain and definition.
async fn pending_tasks(bbs: &Bbs) -> BTreeMap<String, (String, Option<pb::TaskDefinition>)> {
    let response = bbs.client().await.tasks(api::TasksRequest::default()).await.unwrap().into_inner();
    response
        .tasks
        .into_iter()
        .filter(|t| t.state == pb::task::State::Pending as i32)
        .map(|t| (t.task_guid, (t.domain, t.task_definition)))
        .collect()
}

/// The fresh domains, each with the seconds it stays fresh (0: never expires).
async fn domains(bbs: &Bbs) -> Vec<(String, u32)> {
    let response = bbs.client().await.domains(api::DomainsRequest {}).await.unwrap().into_inner();
    let mut domains: Vec<_> = response.domains.into_iter().zip(response.ttl_remaining).collect();
    domains.sort();
    domains
}

/// Whether two domain listings name the same domains, expiring alike, with TTLs a minute apart
/// at most (the time between them).
fn same_domains(a: &[(String, u32)], b: &[(String, u32)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((n, x), (m, y))| n == m && (*x == 0) == (*y == 0) && x.abs_diff(*y) <= 60)
}

async fn export_wipe_apply(backend: Backend) {
    let Some(original) = Bbs::start_on(backend).await else { return };
    populate(&original).await;
    let dir = harness::scratch(&format!("export-apply-{}", backend.name()));
    let exported = original.diego(&["export"]).await.ok().to_owned();
    let state = dir.join("state.yaml");
    std::fs::write(&state, &exported).unwrap();
    let state = state.to_str().unwrap();
    // The JSON export is the same document.
    let json = original.diego(&["export", "--json"]).await.json();
    let yaml: serde_json::Value = serde_norway::from_str(&exported).unwrap();
    assert_eq!(json, yaml);
    assert_eq!(json["desired_lrps"].as_array().unwrap().len(), 3, "{exported}");
    assert_eq!(json["tasks"].as_array().unwrap().len(), 2, "{exported}");
    assert!(json["desired_lrps"][0].get("modification_tag").is_none(), "{exported}");
    // The expiring domain is exported with what is left of its TTL, the other without one.
    let ttl = json["domains"][0]["ttl_remaining"].as_u64().unwrap_or_default();
    assert!(json["domains"][0]["name"] == "batch" && (3540..=3600).contains(&ttl), "{exported}");
    assert!(json["domains"][1].get("ttl_remaining").is_none(), "{exported}");

    // --domain exports one domain's part.
    let mut batch = original.diego(&["export", "--domain", "batch", "--json"]).await.json();
    // Read a moment later, its TTL may be a second shorter.
    let later = batch["domains"][0]["ttl_remaining"].as_u64().unwrap_or_default();
    assert!(ttl.abs_diff(later) <= 60, "{batch}");
    batch["domains"][0]["ttl_remaining"] = json["domains"][0]["ttl_remaining"].clone();
    assert_eq!(
        batch,
        serde_json::json!({
            "desired_lrps": [json["desired_lrps"][1].clone()],
            "domains": [json["domains"][0].clone()],
            "tasks": [json["tasks"][0].clone()],
        })
    );
    assert_eq!(
        (batch["desired_lrps"][0]["process_guid"].as_str(), batch["tasks"][0]["task_guid"].as_str()),
        (Some("idle"), Some("nightly"))
    );

    // Everything lost: a BBS on an empty database.
    let restored = Bbs::start_on(backend).await.unwrap();
    assert!(desired_lrps(&restored).await.is_empty());

    // --dry-run prints the diff and changes nothing.
    let dry = restored.diego(&["apply", "-f", state, "--dry-run"]).await.ok().to_owned();
    let expected = "+ domain batch\n+ domain diego\n+ lrp every-field\n+ lrp idle\n+ lrp web\n+ task nightly\n\
                    + task report\ndry run: nothing was changed\n";
    assert_eq!(dry, expected);
    assert!(desired_lrps(&restored).await.is_empty() && pending_tasks(&restored).await.is_empty());
    assert!(domains(&restored).await.is_empty());

    let applied = restored.diego(&["apply", "-f", state]).await.ok().to_owned();
    assert_eq!(applied, expected.replace("dry run: nothing was changed\n", ""));
    let (before, after) = (desired_lrps(&original).await, desired_lrps(&restored).await);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["every-field", "idle", "web"]);
    for (guid, lrp) in &before {
        assert_eq!(Some(lrp), after.get(guid), "{guid} differs after export, wipe and apply");
    }
    assert_eq!(pending_tasks(&restored).await, pending_tasks(&original).await);
    let (was, now) = (domains(&original).await, domains(&restored).await);
    assert!(same_domains(&was, &now), "{was:?} became {now:?}");

    // Applying again changes nothing: no line, no write.
    let tags = modification_tags(&restored).await;
    let again = restored.diego(&["apply", "-f", state, "--prune"]).await.ok().to_owned();
    assert_eq!(again, "no changes: the cluster matches the file\n");
    assert_eq!(modification_tags(&restored).await, tags);
    // The export piped in (standard input, YAML) is the same file.
    let piped = restored.diego_with_input(&["apply", "-f", "-"], &exported).await;
    assert_eq!(piped.ok(), "no changes: the cluster matches the file\n");
    // And the restored cluster exports the same document.
    assert_eq!(restored.diego(&["export"]).await.ok(), exported);

    // --prune removes an LRP of the file's domains that the file lacks, not one of another domain.
    restored.diego(&["desire-lrp", "--guid", "stray", "--command", "true", "--instances", "0"]).await.ok();
    let other = ["desire-lrp", "--guid", "other", "--command", "true", "--instances", "0", "--domain", "elsewhere"];
    restored.diego(&other).await.ok();
    assert_eq!(restored.diego(&["apply", "-f", state]).await.ok(), "no changes: the cluster matches the file\n");
    let dry = restored.diego(&["apply", "-f", state, "--prune", "--dry-run"]).await.ok().to_owned();
    assert_eq!(dry, "- lrp stray\ndry run: nothing was changed\n");
    assert!(desired_lrps(&restored).await.contains_key("stray"));
    assert_eq!(restored.diego(&["apply", "-f", state, "--prune"]).await.ok(), "- lrp stray\n");
    let now = desired_lrps(&restored).await;
    assert!(!now.contains_key("stray") && now.contains_key("other"), "{:?}", now.keys());

    // An updatable change is an update; a run-info change is refused, or replaced with --replace.
    let mut file: serde_json::Value = serde_norway::from_str(&exported).unwrap();
    let web = file["desired_lrps"].as_array_mut().unwrap().iter_mut().find(|l| l["process_guid"] == "web").unwrap();
    web["instances"] = 3.into();
    web["annotation"] = "v2".into();
    web["image_username"] = "puller".into();
    web["image_password"] = "secret".into();
    let edited = dir.join("edited.json");
    std::fs::write(&edited, file.to_string()).unwrap();
    let edited = edited.to_str().unwrap();
    let out = restored.diego(&["apply", "-f", edited]).await.ok().to_owned();
    let changes = "annotation \"\" → \"v2\", image_password, image_username \"\" → \"puller\", instances 2 → 3";
    assert_eq!(out, format!("~ lrp web: {changes}\n"));
    let web_now = restored.desired("web").await;
    assert_eq!((web_now.instances, web_now.annotation.as_str()), (3, "v2"));
    assert_eq!((web_now.image_username.as_str(), web_now.image_password.as_str()), ("puller", "secret"));
    let unedited = pb::DesiredLrp {
        instances: 2,
        annotation: String::new(),
        image_username: String::new(),
        image_password: String::new(),
        modification_tag: None,
        ..web_now
    };
    assert_eq!(unedited, before["web"]);

    let web = file["desired_lrps"].as_array_mut().unwrap().iter_mut().find(|l| l["process_guid"] == "web").unwrap();
    web["memory_mb"] = 256.into();
    std::fs::write(edited, file.to_string()).unwrap();
    let out = restored.diego(&["apply", "-f", edited]).await;
    let line = out.fails(2).to_owned();
    assert!(line.contains("1 desired lrp(s) left as they are") && line.contains("--replace"), "{line}");
    assert!(out.stdout.starts_with("! lrp web: run info differs (memory_mb)"), "{out:?}");
    assert_eq!(restored.desired("web").await.memory_mb, 128);
    let out = restored.diego(&["apply", "-f", edited, "--replace"]).await.ok().to_owned();
    assert_eq!(out, "-+ lrp web: replaced (run info differs: memory_mb)\n");
    assert_eq!(restored.desired("web").await.memory_mb, 256);
    assert_eq!(restored.diego(&["apply", "-f", edited]).await.ok(), "no changes: the cluster matches the file\n");

    restored.stop().await;
    original.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_state_file_applies_once() {
    // The repository's examples, in a state file written by hand (not exported): the second
    // apply must find nothing to change, so nothing the BBS stores differs from what it was given.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let entry = |path: &str| -> serde_json::Value {
        serde_norway::from_str(&std::fs::read_to_string(format!("{root}/{path}")).unwrap()).unwrap()
    };
    let minimal = serde_json::json!({"process_guid": "minimal", "action": {"run_action": {"path": "/bin/true"}}});
    let file = serde_json::json!({
        "desired_lrps": [entry("examples/lrp-web.yaml"), minimal],
        "domains": [{"name": "diego"}, {"name": "batch", "ttl_remaining": 0}],
        "tasks": [entry("examples/task-result.yaml"), entry("examples/task-callback.yaml")],
    });
    let path = harness::scratch("hand-written-state").join("state.yaml");
    std::fs::write(&path, serde_norway::to_string(&file).unwrap()).unwrap();
    let path = path.to_str().unwrap();
    let bbs = Bbs::start().await;
    let first = bbs.diego(&["apply", "-f", path]).await.ok().to_owned();
    assert_eq!(
        first,
        "+ domain batch\n+ domain diego\n+ lrp minimal\n+ lrp web\n+ task nightly-report\n+ task report\n"
    );
    assert_eq!(bbs.diego(&["apply", "-f", path]).await.ok(), "no changes: the cluster matches the file\n");
    let json = bbs.diego(&["apply", "-f", path, "--json"]).await.json();
    assert_eq!(json, serde_json::json!({"dry_run": false, "changes": [], "refused": []}));
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_replaces_a_record_recovered_from_the_cells() {
    // A desired LRP as convergence rebuilds it from the cells (annotation marked, run info as
    // the cells knew it): apply desires the file's over it, and the BBS replaces the record
    // (a BBS whose recovery marker differed from the planner's would refuse: AlreadyExists).
    let bbs = Bbs::start().await;
    let dir = harness::scratch("apply-recovered");
    let action = serde_json::json!({"run_action": {"path": "/bin/true"}});
    let recovered = serde_json::json!({
        "process_guid": "api", "instances": 0, "memory_mb": 32,
        "annotation": format!("{}v1", cli::plan::RECOVERED_PREFIX), "action": action,
    });
    let path = dir.join("recovered.json");
    std::fs::write(&path, recovered.to_string()).unwrap();
    bbs.diego(&["desire-lrp", "--file", path.to_str().unwrap()]).await.ok();
    let wanted = serde_json::json!({
        "process_guid": "api", "instances": 0, "memory_mb": 64, "annotation": "v1", "action": action,
    });
    let state = dir.join("state.json");
    std::fs::write(&state, serde_json::json!({ "desired_lrps": [wanted] }).to_string()).unwrap();
    let state = state.to_str().unwrap();
    let out = bbs.diego(&["apply", "-f", state]).await.ok().to_owned();
    assert_eq!(out, "~ lrp api: replaces the record recovered from the cells\n");
    let lrp = bbs.desired("api").await;
    assert_eq!((lrp.memory_mb, lrp.annotation.as_str()), (64, "v1"));
    assert_eq!(bbs.diego(&["apply", "-f", state]).await.ok(), "no changes: the cluster matches the file\n");
    bbs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_state_file_is_refused_before_connecting() {
    let dir = harness::scratch("bad-state");
    let bad = dir.join("state.yaml");
    std::fs::write(&bad, "desired_lrps:\n  - {process_guid: web, memory_mb: lots}\n").unwrap();
    let dead = harness::dead_address();
    let out = harness::diego(&["--bbs-address", &dead, "apply", "-f", bad.to_str().unwrap()]).await;
    let line = out.fails(2);
    assert!(
        line.starts_with(&format!("error: invalid state file {}: desired_lrps[0] (web): ", bad.display())),
        "{line}"
    );
    let missing = dir.join("absent.yaml");
    let out = harness::diego(&["--bbs-address", &dead, "apply", "-f", missing.to_str().unwrap()]).await;
    assert!(out.fails(2).starts_with("error: cannot read"), "{out:?}");
}

async fn lrp_json_desires_a_copy(backend: Backend) {
    let Some(bbs) = Bbs::start_on(backend).await else { return };
    bbs.diego(&["desire-lrp", "--file", EVERY_FIELD]).await.ok();
    let shown = bbs.diego(&["lrp", "every-field", "--json"]).await.ok().to_owned();
    let out = bbs.diego_with_input(&["desire-lrp", "--file", "-", "--guid", "every-field-copy"], &shown).await;
    assert!(out.ok().contains("desired lrp every-field-copy"), "{out:?}");
    let (original, copy) = (bbs.desired("every-field").await, bbs.desired("every-field-copy").await);
    assert_eq!(
        pb::DesiredLrp { process_guid: "every-field".into(), modification_tag: None, ..copy },
        pb::DesiredLrp { modification_tag: None, ..original }
    );
    // update-lrp --file reads the same document: an edited instance count is applied.
    let mut edited: serde_json::Value = serde_json::from_str(&shown).unwrap();
    edited["desired_lrp"]["instances"] = 4.into();
    bbs.diego_with_input(&["update-lrp", "every-field", "--file", "-"], &edited.to_string()).await.ok();
    assert_eq!(bbs.desired("every-field").await.instances, 4);
    bbs.stop().await;
}
