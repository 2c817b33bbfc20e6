//! `diego desire-lrp --route HOST[:PORT]`: the routes land in the desired LRP's `cf-router`
//! document, a route without a port on the first `--port`; without any `--port` it is refused.

use clap::Parser;
use cli::commands::lrps::DesireLrpArgs;

#[derive(Debug, Parser)]
struct Desire {
    #[command(flatten)]
    args: DesireLrpArgs,
}

fn desire(flags: &[&str]) -> Result<proto::pb::models::v1::DesiredLrp, String> {
    let parsed = Desire::try_parse_from(std::iter::once("desire-lrp").chain(flags.iter().copied()))
        .map_err(|e| e.to_string())?;
    parsed.args.build().map_err(|e| e.to_string())
}

#[test]
fn routes_go_to_the_first_port_unless_they_name_one() {
    let lrp = desire(&[
        "--guid",
        "web",
        "--command",
        "exec ./server",
        "--port",
        "8080",
        "--port",
        "9090",
        "--route",
        "Web.test",
        "--route",
        "admin.test:9090",
        "--route",
        "www.test",
    ])
    .expect("valid flags");
    let document: serde_json::Value =
        serde_json::from_slice(&lrp.routes["cf-router"]).expect("the cf-router document is JSON");
    assert_eq!(
        document,
        serde_json::json!([
            {"hostnames": ["Web.test", "www.test"], "port": 8080},
            {"hostnames": ["admin.test"], "port": 9090},
        ])
    );
    let plain = desire(&["--guid", "web", "--command", "x", "--port", "8080"]).expect("valid flags");
    assert!(plain.routes.is_empty());
}

#[test]
fn a_route_without_any_port_is_refused() {
    let refused = desire(&["--guid", "web", "--command", "x", "--route", "web.test"]).expect_err("no port");
    assert!(refused.contains("--route") && refused.contains("--port"), "{refused}");
    let refused = desire(&["--guid", "web", "--command", "x", "--port", "8080", "--route", "bad host"])
        .expect_err("not a hostname");
    assert!(refused.contains("hostname"), "{refused}");
}
