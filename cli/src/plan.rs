//! `diego apply`'s planner: what the cluster holds and what a state file says in, the steps
//! that make the cluster match the file out, with no IO ([`plan`]). `commands::apply` reads the
//! cluster, plans, prints the plan as a diff and (unless `--dry-run`) carries it out.
//!
//! The rules, per kind of entry:
//! - desired LRP absent from the cluster: desire it (`+ lrp web`);
//! - present and equal (the modification tag aside): nothing;
//! - present, and only fields UpdateDesiredLRP changes differ ([`UPDATABLE`]): update those
//!   (`~ lrp api: instances 3 → 5`);
//! - present, and anything else differs (run info, scheduling): refused with the fields named
//!   (`! lrp api: ...`), since that needs every instance replaced by a rolling update, which is
//!   not supported yet; with `--replace`, removed and desired again (`-+ lrp api: ...`);
//! - present but rebuilt by convergence from what the cells run (its annotation starts with
//!   [`RECOVERED_PREFIX`], issue 19): desired again from the file, whatever differs; the BBS
//!   replaces a recovered record on DesireLRP and keeps its running instances
//!   (`~ lrp web: replaces the record recovered from the cells`);
//! - in the cluster but not in the file: removed with `--prune` (`- lrp old`), within the
//!   file's domains (those it lists and those of its LRPs) or `--domain`'s;
//! - task absent (by guid, whatever its state): desired (`+ task report`); present: nothing;
//! - domain absent: marked fresh for the file's TTL (`+ domain batch`); present: changed only
//!   when one of the two expires and the other does not (`~ domain batch: never expires`,
//!   `~ domain batch: fresh for 120 s`). When both expire the cluster's expiry is kept: the
//!   domain's owner keeps it fresh, and an apply does not extend it (so a second apply of an
//!   exported file plans nothing, though the TTL it holds has run down since).
//!
//! With `--domain D`, only the file's entries in D are applied and only D is pruned.
//! Applying the same file twice plans nothing the second time.

use std::collections::{BTreeMap, BTreeSet};

use proto::pb::bbs::v1 as api;
use proto::pb::models::v1 as pb;

use crate::lrp_file;
use crate::state_file::State;

/// The fields of a desired LRP that UpdateDesiredLRP changes in place.
pub const UPDATABLE: &[&str] =
    &["instances", "routes", "annotation", "metric_tags", "image_username", "image_password"];

/// The annotation prefix of a desired LRP convergence rebuilt from the cells' reports: the
/// converger's `lrp::recovery::RECOVERED_PREFIX` (the CLI does not link the converger).
pub const RECOVERED_PREFIX: &str = "[recovered] ";

/// What the cluster holds, as far as apply compares it.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// Every desired LRP.
    pub desired_lrps: Vec<pb::DesiredLrp>,
    /// The fresh domains, each with the seconds it stays fresh (0: never expires).
    pub domains: BTreeMap<String, u32>,
    /// The guid of every task, whatever its state.
    pub task_guids: BTreeSet<String>,
}

/// `diego apply`'s flags that change the plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Remove desired LRPs the file does not hold (within its domains).
    pub prune: bool,
    /// Remove and desire again the LRPs whose run info differs, instead of refusing them.
    pub replace: bool,
    /// Apply only this domain's entries, and prune only this domain.
    pub domain: Option<String>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Mark a domain fresh for `ttl` seconds (0: for ever); `refresh` when it is already fresh.
    UpsertDomain {
        /// The domain.
        name: String,
        /// Seconds; 0 never expires.
        ttl: u32,
        /// Whether the domain is fresh already (the step only renews it).
        refresh: bool,
    },
    /// Desire an LRP the cluster does not have.
    DesireLrp(Box<pb::DesiredLrp>),
    /// Desire an LRP over the record convergence recovered from the cells (the BBS replaces
    /// it, keeping its instances).
    ReclaimLrp(Box<pb::DesiredLrp>),
    /// Change the updatable fields of a desired LRP.
    UpdateLrp {
        /// The process guid.
        guid: String,
        /// The update to send.
        update: Box<pb::DesiredLrpUpdate>,
        /// What changes, one entry per field (`instances 3 → 5`).
        changes: Vec<String>,
    },
    /// Remove a desired LRP and desire it again (`--replace`): its run info differs.
    ReplaceLrp {
        /// The LRP as the file has it.
        lrp: Box<pb::DesiredLrp>,
        /// The fields that differ.
        fields: Vec<String>,
    },
    /// Leave a desired LRP as it is: its run info differs and `--replace` was not given.
    RefuseLrp {
        /// The process guid.
        guid: String,
        /// The fields that differ and cannot be updated in place.
        fields: Vec<String>,
    },
    /// Remove a desired LRP the file does not hold (`--prune`).
    RemoveLrp {
        /// The process guid.
        guid: String,
    },
    /// Desire a task the cluster does not have.
    DesireTask(Box<api::DesireTaskRequest>),
}

impl Step {
    /// The step as one line of the diff apply prints.
    pub fn line(&self) -> String {
        match self {
            Step::UpsertDomain { name, refresh: false, .. } => format!("+ domain {name}"),
            Step::UpsertDomain { name, ttl: 0, refresh: true } => format!("~ domain {name}: never expires"),
            Step::UpsertDomain { name, ttl, refresh: true } => format!("~ domain {name}: fresh for {ttl} s"),
            Step::DesireLrp(lrp) => format!("+ lrp {}", lrp.process_guid),
            Step::ReclaimLrp(lrp) => {
                format!("~ lrp {}: replaces the record recovered from the cells", lrp.process_guid)
            }
            Step::UpdateLrp { guid, changes, .. } => format!("~ lrp {guid}: {}", changes.join(", ")),
            Step::ReplaceLrp { lrp, fields } => {
                format!("-+ lrp {}: replaced (run info differs: {})", lrp.process_guid, fields.join(", "))
            }
            Step::RefuseLrp { guid, fields } => format!(
                "! lrp {guid}: run info differs ({}); needs a rolling update, not supported yet: left as it is \
                 (--replace removes and desires it again)",
                fields.join(", ")
            ),
            Step::RemoveLrp { guid } => format!("- lrp {guid}"),
            Step::DesireTask(task) => format!("+ task {}", task.task_guid),
        }
    }

    /// Whether the step changes the cluster (a refusal does not).
    pub fn changes_the_cluster(&self) -> bool {
        !matches!(self, Step::RefuseLrp { .. })
    }
}

/// The steps that make `current` match `file`, in the order they are carried out: domains (by
/// name), then desired LRPs (desires, updates, replacements, refusals, by guid), tasks, and last the
/// removals, so a cluster is never emptier than both the old and the new state.
pub fn plan(current: &Current, file: &State, options: &Options) -> Vec<Step> {
    let in_scope = |domain: &str| options.domain.as_deref().is_none_or(|d| d == domain);
    let mut steps = Vec::new();
    let mut domains: Vec<_> = file.domains.iter().filter(|d| in_scope(&d.name)).collect();
    domains.sort_by(|a, b| a.name.cmp(&b.name));
    for domain in domains {
        let ttl = domain.ttl_remaining.unwrap_or(0);
        match current.domains.get(&domain.name) {
            None => steps.push(Step::UpsertDomain { name: domain.name.clone(), ttl, refresh: false }),
            Some(&left) if (left == 0) != (ttl == 0) => {
                steps.push(Step::UpsertDomain { name: domain.name.clone(), ttl, refresh: true });
            }
            Some(_) => {}
        }
    }
    let existing: BTreeMap<&str, &pb::DesiredLrp> =
        current.desired_lrps.iter().map(|l| (l.process_guid.as_str(), l)).collect();
    let mut wanted: Vec<&pb::DesiredLrp> = file.desired_lrps.iter().filter(|l| in_scope(&l.domain)).collect();
    wanted.sort_by(|a, b| a.process_guid.cmp(&b.process_guid));
    for lrp in &wanted {
        match existing.get(lrp.process_guid.as_str()) {
            None => steps.push(Step::DesireLrp(Box::new((*lrp).clone()))),
            Some(was) => steps.extend(compare(was, lrp, options.replace)),
        }
    }
    let mut tasks: Vec<&api::DesireTaskRequest> =
        file.tasks.iter().filter(|t| in_scope(&t.domain) && !current.task_guids.contains(&t.task_guid)).collect();
    tasks.sort_by(|a, b| a.task_guid.cmp(&b.task_guid));
    steps.extend(tasks.into_iter().map(|t| Step::DesireTask(Box::new(t.clone()))));
    if options.prune {
        let scope: BTreeSet<&str> = match &options.domain {
            Some(domain) => BTreeSet::from([domain.as_str()]),
            None => file
                .domains
                .iter()
                .map(|d| d.name.as_str())
                .chain(file.desired_lrps.iter().map(|l| l.domain.as_str()))
                .collect(),
        };
        let kept: BTreeSet<&str> = wanted.iter().map(|l| l.process_guid.as_str()).collect();
        for (guid, lrp) in &existing {
            if scope.contains(lrp.domain.as_str()) && !kept.contains(guid) {
                steps.push(Step::RemoveLrp { guid: (*guid).to_owned() });
            }
        }
    }
    steps
}

/// `lrp` as the BBS stores it: through the domain model and back, which fills what the BBS
/// derives (so a file is compared with the cluster in the cluster's terms). A message the model
/// refuses is left as it is (the state file reader refuses those before planning).
pub fn as_stored(lrp: &pb::DesiredLrp) -> pb::DesiredLrp {
    proto::models::DesiredLrp::try_from(lrp.clone()).map_or_else(|_| lrp.clone(), pb::DesiredLrp::from)
}

/// The step for a desired LRP both the cluster and the file hold, if any.
fn compare(was: &pb::DesiredLrp, wanted: &pb::DesiredLrp, replace: bool) -> Option<Step> {
    let untagged = |lrp: &pb::DesiredLrp| lrp_file::to_json(&pb::DesiredLrp { modification_tag: None, ..lrp.clone() });
    let (before, after) = (untagged(was), untagged(&as_stored(wanted)));
    let keys: BTreeSet<&String> = before.as_object()?.keys().chain(after.as_object()?.keys()).collect();
    let differing: Vec<String> =
        keys.into_iter().filter(|k| before.get(k.as_str()) != after.get(k.as_str())).cloned().collect();
    if differing.is_empty() {
        return None;
    }
    if was.annotation.starts_with(RECOVERED_PREFIX) {
        return Some(Step::ReclaimLrp(Box::new(wanted.clone())));
    }
    let fixed: Vec<String> = differing.iter().filter(|k| !UPDATABLE.contains(&k.as_str())).cloned().collect();
    if !fixed.is_empty() {
        return Some(if replace {
            Step::ReplaceLrp { lrp: Box::new(wanted.clone()), fields: fixed }
        } else {
            Step::RefuseLrp { guid: wanted.process_guid.clone(), fields: fixed }
        });
    }
    let has = |field: &str| differing.iter().any(|k| k == field);
    let update = pb::DesiredLrpUpdate {
        instances: has("instances").then_some(wanted.instances),
        routes: if has("routes") { wanted.routes.clone() } else { Default::default() },
        has_routes: has("routes"),
        annotation: has("annotation").then(|| wanted.annotation.clone()),
        metric_tags: if has("metric_tags") { wanted.metric_tags.clone() } else { Default::default() },
        has_metric_tags: has("metric_tags"),
        image_username: has("image_username").then(|| wanted.image_username.clone()),
        image_password: has("image_password").then(|| wanted.image_password.clone()),
    };
    let changes = differing
        .iter()
        .map(|field| match field.as_str() {
            "instances" => format!("instances {} → {}", was.instances, wanted.instances),
            "annotation" => format!("annotation {:?} → {:?}", was.annotation, wanted.annotation),
            "image_username" => format!("image_username {:?} → {:?}", was.image_username, wanted.image_username),
            // Route documents can be long and a password is a secret: named, not shown.
            other => other.to_owned(),
        })
        .collect();
    Some(Step::UpdateLrp { guid: wanted.process_guid.clone(), update: Box::new(update), changes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_file::DomainEntry;

    fn lrp(guid: &str, domain: &str, instances: i32) -> pb::DesiredLrp {
        pb::DesiredLrp {
            process_guid: guid.into(),
            domain: domain.into(),
            instances,
            memory_mb: 64,
            rootfs: lrp_file::DEFAULT_ROOTFS.into(),
            ..Default::default()
        }
    }

    fn task(guid: &str) -> api::DesireTaskRequest {
        api::DesireTaskRequest { task_guid: guid.into(), domain: "diego".into(), task_definition: None }
    }

    fn domain(name: &str, ttl: Option<u32>) -> DomainEntry {
        DomainEntry { name: name.into(), ttl_remaining: ttl }
    }

    fn lines(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::line).collect()
    }

    /// A cluster holding `lrps`, the domain `diego` and the task `done`.
    fn cluster(lrps: Vec<pb::DesiredLrp>) -> Current {
        Current {
            desired_lrps: lrps,
            domains: BTreeMap::from([("diego".to_owned(), 0)]),
            task_guids: BTreeSet::from(["done".to_owned()]),
        }
    }

    #[test]
    fn an_empty_cluster_gets_everything_desired() {
        let file = State {
            desired_lrps: vec![lrp("web", "diego", 2), lrp("api", "diego", 1)],
            domains: vec![domain("diego", None), domain("batch", Some(60))],
            tasks: vec![task("report")],
        };
        let steps = plan(&Current::default(), &file, &Options::default());
        assert_eq!(lines(&steps), ["+ domain batch", "+ domain diego", "+ lrp api", "+ lrp web", "+ task report"]);
        assert_eq!(steps[0], Step::UpsertDomain { name: "batch".into(), ttl: 60, refresh: false });
    }

    #[test]
    fn a_domain_changes_only_between_expiring_and_never_expiring() {
        let mut current = cluster(vec![]);
        current.domains.insert("batch".into(), 30);
        let file = State { domains: vec![domain("batch", Some(3600)), domain("diego", None)], ..State::default() };
        assert_eq!(plan(&current, &file, &Options::default()), [], "both expire, or neither");
        let file = State { domains: vec![domain("batch", None), domain("diego", Some(60))], ..State::default() };
        assert_eq!(
            lines(&plan(&current, &file, &Options::default())),
            ["~ domain batch: never expires", "~ domain diego: fresh for 60 s"]
        );
    }

    #[test]
    fn a_cluster_that_matches_the_file_plans_nothing() {
        let mut stored = lrp("web", "diego", 2);
        stored.modification_tag = Some(pb::ModificationTag { epoch: "e".into(), index: 4 });
        let file = State {
            desired_lrps: vec![lrp("web", "diego", 2)],
            domains: vec![domain("diego", None), domain("diego-too", Some(0))],
            tasks: vec![task("done")],
        };
        let mut current = cluster(vec![stored]);
        current.domains.insert("diego-too".into(), 0);
        let options = Options { prune: true, ..Options::default() };
        assert_eq!(plan(&current, &file, &options), []);
    }

    #[test]
    fn updatable_fields_are_updated_in_place() {
        let mut wanted = lrp("api", "diego", 5);
        wanted.annotation = "v2".into();
        wanted.routes = [("cf-router".to_owned(), b"[]".to_vec())].into();
        wanted.image_password = "secret".into();
        let steps = plan(
            &cluster(vec![lrp("api", "diego", 3)]),
            &State { desired_lrps: vec![wanted.clone()], ..State::default() },
            &Options::default(),
        );
        assert_eq!(lines(&steps), ["~ lrp api: annotation \"\" → \"v2\", image_password, instances 3 → 5, routes"]);
        let Step::UpdateLrp { update, .. } = &steps[0] else { panic!("{steps:?}") };
        assert_eq!(update.instances, Some(5));
        assert_eq!(update.annotation.as_deref(), Some("v2"));
        assert!(update.has_routes && !update.has_metric_tags);
        assert_eq!((update.image_username.as_deref(), update.image_password.as_deref()), (None, Some("secret")));
    }

    #[test]
    fn the_file_is_compared_as_the_bbs_stores_it() {
        let mut wanted = lrp("api", "diego", 1);
        wanted.deprecated_start_timeout_s = 60;
        let stored = as_stored(&wanted);
        let steps = plan(
            &cluster(vec![stored.clone()]),
            &State { desired_lrps: vec![wanted], ..State::default() },
            &Options::default(),
        );
        assert_eq!(steps, [], "stored as {stored:?}");
    }

    #[test]
    fn a_run_info_change_is_refused_unless_replace() {
        let mut wanted = lrp("api", "diego", 5);
        wanted.memory_mb = 128;
        wanted.ports = vec![8080];
        let file = State { desired_lrps: vec![wanted.clone()], ..State::default() };
        let current = cluster(vec![lrp("api", "diego", 3)]);
        let steps = plan(&current, &file, &Options::default());
        assert_eq!(steps, [Step::RefuseLrp { guid: "api".into(), fields: vec!["memory_mb".into(), "ports".into()] }]);
        assert!(!steps[0].changes_the_cluster());
        assert!(steps[0].line().starts_with("! lrp api: run info differs (memory_mb, ports)"), "{}", steps[0].line());
        let steps = plan(&current, &file, &Options { replace: true, ..Options::default() });
        assert_eq!(
            steps,
            [Step::ReplaceLrp { lrp: Box::new(wanted), fields: vec!["memory_mb".into(), "ports".into()] }]
        );
    }

    #[test]
    fn a_record_recovered_from_the_cells_is_desired_again_from_the_file() {
        let mut recovered = lrp("api", "diego", 3);
        recovered.annotation = format!("{RECOVERED_PREFIX}v1");
        recovered.memory_mb = 32;
        let mut wanted = lrp("api", "diego", 2);
        wanted.annotation = "v1".into();
        let file = State { desired_lrps: vec![wanted.clone()], ..State::default() };
        let steps = plan(&cluster(vec![recovered]), &file, &Options::default());
        assert_eq!(steps, [Step::ReclaimLrp(Box::new(wanted.clone()))]);
        assert_eq!(steps[0].line(), "~ lrp api: replaces the record recovered from the cells");
        // Once replaced, the record is the file's: nothing more to do.
        assert_eq!(plan(&cluster(vec![wanted]), &file, &Options::default()), []);
    }

    #[test]
    fn prune_removes_what_the_file_lacks_within_its_domains_only() {
        let current = cluster(vec![lrp("web", "diego", 1), lrp("old", "diego", 1), lrp("other", "elsewhere", 1)]);
        let file = State { desired_lrps: vec![lrp("web", "diego", 1)], ..State::default() };
        assert_eq!(plan(&current, &file, &Options::default()), []);
        let prune = Options { prune: true, ..Options::default() };
        assert_eq!(lines(&plan(&current, &file, &prune)), ["- lrp old"]);
        // A domain the file lists is in scope even with no LRP of it in the file.
        let file = State { domains: vec![domain("elsewhere", None)], ..file };
        let mut current = current;
        current.domains.insert("elsewhere".into(), 0);
        assert_eq!(lines(&plan(&current, &file, &prune)), ["- lrp old", "- lrp other"]);
        // An empty file prunes nothing: it names no domain.
        assert_eq!(plan(&current, &State::default(), &prune), []);
    }

    #[test]
    fn domain_limits_both_what_is_applied_and_what_is_pruned() {
        let current = cluster(vec![lrp("old", "diego", 1), lrp("gone", "batch", 1)]);
        let file = State {
            desired_lrps: vec![lrp("web", "diego", 1), lrp("job", "batch", 1)],
            domains: vec![domain("batch", None), domain("diego", None)],
            tasks: vec![task("report")],
        };
        let options = Options { prune: true, domain: Some("batch".into()), ..Options::default() };
        assert_eq!(lines(&plan(&current, &file, &options)), ["+ domain batch", "+ lrp job", "- lrp gone"]);
    }

    #[test]
    fn tasks_are_desired_only_when_absent_and_present_domains_only_refreshed_with_a_ttl() {
        let file = State {
            domains: vec![domain("diego", Some(30))],
            tasks: vec![task("done"), task("new")],
            ..State::default()
        };
        let steps = plan(&cluster(Vec::new()), &file, &Options::default());
        assert_eq!(lines(&steps), ["~ domain diego: fresh for 30 s", "+ task new"]);
    }

    #[test]
    fn applying_the_planned_steps_leaves_nothing_to_plan() {
        // The plan's own idempotence: carry the steps out on a model cluster, plan again.
        let mut wanted = lrp("api", "diego", 4);
        wanted.annotation = "x".into();
        let file = State {
            desired_lrps: vec![lrp("web", "diego", 2), wanted],
            domains: vec![domain("diego", None)],
            tasks: vec![task("report")],
        };
        let mut current = cluster(vec![lrp("api", "diego", 1), lrp("old", "diego", 1)]);
        let options = Options { prune: true, ..Options::default() };
        for step in plan(&current, &file, &options) {
            match step {
                Step::UpsertDomain { name, .. } => {
                    current.domains.insert(name, 0);
                }
                Step::DesireLrp(lrp) => current.desired_lrps.push(*lrp),
                Step::UpdateLrp { guid, update, .. } => {
                    let lrp = current.desired_lrps.iter_mut().find(|l| l.process_guid == guid).unwrap();
                    lrp.instances = update.instances.unwrap_or(lrp.instances);
                    lrp.annotation = update.annotation.unwrap_or_else(|| lrp.annotation.clone());
                }
                Step::RemoveLrp { guid } => current.desired_lrps.retain(|l| l.process_guid != guid),
                Step::DesireTask(task) => {
                    current.task_guids.insert(task.task_guid);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(plan(&current, &file, &options), []);
    }
}
