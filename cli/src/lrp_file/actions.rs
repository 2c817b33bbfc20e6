//! One-line summaries of actions and health checks for people (`diego lrp`, `diego tasks`).
//! The messages themselves are the generated ones; their file form is their serde form.

use proto::pb::models::v1 as pb;

/// The command line of the run actions inside `action`, or what the other kinds do.
pub fn action_summary(action: &pb::Action) -> String {
    use pb::action::Action as A;
    let inner = |a: &Option<Box<pb::Action>>| a.as_deref().map(action_summary).unwrap_or_default();
    let list = |actions: &[pb::Action]| {
        actions.iter().map(action_summary).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ")
    };
    match &action.action {
        None => String::new(),
        Some(A::RunAction(r)) => {
            std::iter::once(r.path.as_str()).chain(r.args.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
        }
        Some(A::TimeoutAction(t)) => inner(&t.action),
        Some(A::EmitProgressAction(e)) => inner(&e.action),
        Some(A::TryAction(t)) => inner(&t.action),
        Some(A::ParallelAction(p)) => list(&p.actions),
        Some(A::SerialAction(s)) => list(&s.actions),
        Some(A::CodependentAction(c)) => list(&c.actions),
        Some(A::DownloadAction(d)) => format!("download {}", d.from),
        Some(A::UploadAction(u)) => format!("upload {}", u.from),
    }
}

/// `tcp 8080`, `http 8080/health` (comma-separated), or `none`.
pub fn check_summary(definition: &pb::CheckDefinition) -> String {
    let parts: Vec<String> = definition
        .checks
        .iter()
        .map(|c| match (&c.tcp_check, &c.http_check) {
            (Some(t), _) => format!("tcp {}", t.port),
            (None, Some(h)) => format!("http {}{}", h.port, h.path),
            (None, None) => "empty check".to_owned(),
        })
        .collect();
    if parts.is_empty() { "none".to_owned() } else { parts.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str) -> pb::Action {
        pb::Action {
            action: Some(pb::action::Action::RunAction(pb::RunAction { path: path.into(), ..Default::default() })),
        }
    }

    #[test]
    fn nested_actions_summarize_to_their_run_actions() {
        let serial = pb::Action {
            action: Some(pb::action::Action::SerialAction(pb::SerialAction {
                actions: vec![run("/a"), pb::Action::default(), run("/b")],
                ..Default::default()
            })),
        };
        assert_eq!(action_summary(&serial), "/a; /b");
        assert_eq!(check_summary(&pb::CheckDefinition::default()), "none");
    }
}
