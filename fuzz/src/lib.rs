//! The bodies of the diego-rs fuzz targets (`fuzz_targets/*.rs` are one-line wrappers), so the
//! regression test (`tests/regressions.rs`) and the corpus generator (`examples/gen_corpus.rs`)
//! run exactly the same code without libFuzzer.
//!
//! Every body runs what the real code runs on untrusted input and must never panic. Beyond "no
//! panic", a few invariants are asserted (a failed assertion is a finding, reported like a
//! crash):
//!
//! - a request the codec accepts, re-encoded, is accepted again and decodes to the same message;
//! - a desired LRP / task definition that converts to the domain type converts back to the wire
//!   and again to the same domain value, and the run info the store keeps (encoded, decoded,
//!   `run_info_from_pb`) and the task definition it keeps read back;
//! - `truncate_reason` always yields at most `MAX_REASON_CHARS` characters;
//! - a desired LRP file the CLI reads prints (as `DesiredLrpFile` JSON) to text it reads back.

pub mod requests;
pub mod seeds;

use prost::{Message, Name};
use proto::models::{DesiredLrp, SchedulingInfo, TaskDefinition};
use proto::pb::models::v1 as pb;

pub use requests::{RPCS, Rpc};

/// `requests`: the first byte picks an RPC of the Bbs, Locket, Rep or Auctioneer service
/// ([`RPCS`], modulo its length), the rest is the request body. Runs the server's codec
/// (`proto::codec::decode`: bounds, then prost) and the conversions its handler applies.
pub fn requests(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let rpc = &RPCS[usize::from(selector) % RPCS.len()];
    (rpc.run)(body);
}

/// `desired_lrp`: the bytes as an encoded `diego.models.v1.DesiredLRP`: bounds
/// (`check_message`), prost decode, and the conversion to the domain type with its validation.
/// The decode and conversion also run on bytes the bounds refuse (the store decodes run infos
/// without the request bounds), relying on prost's recursion limit and the validators' own.
pub fn desired_lrp(data: &[u8]) {
    let bounded = proto::bounds::check_message(pb::DesiredLrp::full_name().as_str(), data);
    if let Err(e) = &bounded {
        let _ = e.to_string();
    }
    let Ok(message) = pb::DesiredLrp::decode(data) else {
        return;
    };
    if bounded.is_ok() {
        check_reencoded(&message);
    }
    desired_lrp_message(message);
}

/// The conversion of a decoded `pb::DesiredLrp`, as `DesireLRP` does it, and the round trips.
pub fn desired_lrp_message(message: pb::DesiredLrp) {
    match DesiredLrp::try_from(message) {
        Ok(lrp) => check_desired_lrp(&lrp),
        Err(e) => {
            let _ = e.within("desired_lrp").to_string();
        }
    }
}

/// `task_definition`: the bytes as an encoded `diego.models.v1.TaskDefinition`: bounds, prost
/// decode, `validate_task_definition` and the conversion to the domain type.
pub fn task_definition(data: &[u8]) {
    let bounded = proto::bounds::check_message(pb::TaskDefinition::full_name().as_str(), data);
    if let Err(e) = &bounded {
        let _ = e.to_string();
    }
    let Ok(message) = pb::TaskDefinition::decode(data) else {
        return;
    };
    if bounded.is_ok() {
        check_reencoded(&message);
    }
    task_definition_message(message);
}

/// The validation and conversion of a decoded `pb::TaskDefinition`, as `DesireTask` does it.
pub fn task_definition_message(message: pb::TaskDefinition) {
    let validated = proto::models::validation::validate_task_definition(&message);
    match TaskDefinition::try_from(message) {
        Ok(definition) => {
            assert!(validated.is_ok(), "TaskDefinition::try_from accepted what validate_task_definition refused");
            check_task_definition(&definition);
        }
        Err(e) => {
            assert_eq!(
                validated.as_ref().err(),
                Some(&e),
                "TaskDefinition::try_from and validate_task_definition disagree"
            );
            let _ = e.within("task_definition").to_string();
        }
    }
}

/// `cli_files`: the first byte's low bit says YAML (1) or JSON (0), the rest is a desired LRP
/// file as `diego desire-lrp --file F` reads it (`lrp_file::load`: read as UTF-8, then
/// `lrp_file::parse`). Text that is not UTF-8 goes through `load` itself, from a file.
/// A file that parses is the message the CLI sends, handled as the BBS does.
pub fn cli_files(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let yaml = flags & 1 == 1;
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => cli::lrp_file::parse(text, yaml),
        Err(_) => load_from_file(body, yaml).map_err(|e| e.to_string()),
    };
    match parsed {
        Ok(file) => check_lrp_file(file),
        Err(reason) => drop(reason),
    }
}

/// `lrp_file::load` on `body` written to a file of this process.
fn load_from_file(body: &[u8], yaml: bool) -> Result<proto::pb::models::v1::DesiredLrp, cli::error::Error> {
    let dir = std::env::temp_dir().join(format!("diego-fuzz-cli-files-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(if yaml { "lrp.yaml" } else { "lrp.json" });
    std::fs::write(&path, body).expect("the fuzzer can write its temporary file");
    cli::lrp_file::load(&path)
}

/// What happens to a parsed file: the CLI sends the message in a `DesireLRPRequest`; the BBS
/// bounds and decodes it and converts the desired LRP. `diego lrp --json` prints the file form
/// of a desired LRP (`lrp_file::to_json`), which must read back.
fn check_lrp_file(message: proto::pb::models::v1::DesiredLrp) {
    let printed = cli::lrp_file::to_json(&message).to_string();
    if let Err(e) = cli::lrp_file::parse(&printed, false) {
        panic!("a parsed desired LRP file, printed as JSON, does not read back: {e}\n{printed}");
    }
    let _ = message.action.as_ref().map(cli::lrp_file::action_summary);
    let request = proto::pb::bbs::v1::DesireLrpRequest { desired_lrp: Some(message.clone()) };
    let bytes = request.encode_to_vec();
    let mut buf = bytes.as_slice();
    if let Ok(Some(decoded)) = proto::codec::decode::<proto::pb::bbs::v1::DesireLrpRequest>(&mut buf) {
        assert_eq!(decoded, request, "the BBS decodes a different desired LRP than the CLI sent");
    }
    desired_lrp_message(message);
}

/// A message that passed the bounds, re-encoded: the bounds pass again and it decodes to itself.
pub fn check_reencoded<T: Message + Name + Default + PartialEq + std::fmt::Debug>(message: &T) {
    let bytes = message.encode_to_vec();
    if let Err(e) = proto::bounds::check_message(&T::full_name(), &bytes) {
        panic!("{} passed the bounds, but its re-encoding does not: {e}", T::full_name());
    }
    let again = T::decode(bytes.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(&again, message, "{} changes when re-encoded", T::full_name());
}

/// The round trips of a valid desired LRP: to the wire and back, through the store's run info
/// blob, the scheduling info and the routing view.
pub fn check_desired_lrp(lrp: &DesiredLrp) {
    let wire = pb::DesiredLrp::from(lrp.clone());
    match DesiredLrp::try_from(wire) {
        Ok(back) => assert_eq!(&back, lrp, "a desired LRP changes through the wire"),
        Err(e) => panic!("a valid desired LRP, converted to the wire, is refused: {e}"),
    }
    let blob = lrp.run_info.clone().into_pb().encode_to_vec();
    let stored = pb::DesiredLrpRunInfo::decode(blob.as_slice()).expect("a stored run info decodes");
    match proto::convert::run_info_from_pb(stored) {
        Ok(back) => assert_eq!(back, lrp.run_info, "a run info changes through the store"),
        Err(e) => panic!("a valid run info, stored, does not read back: {e}"),
    }
    let scheduling = pb::DesiredLrpSchedulingInfo::from(lrp.scheduling.clone());
    match SchedulingInfo::try_from(scheduling) {
        Ok(back) => assert_eq!(back, lrp.scheduling, "a scheduling info changes through the wire"),
        Err(e) => panic!("a valid scheduling info, converted to the wire, is refused: {e}"),
    }
    let _ = proto::convert::routing_info_to_pb(&lrp.scheduling, &lrp.metric_tags);
}

/// The round trip of a valid task definition through the store's blob.
pub fn check_task_definition(definition: &TaskDefinition) {
    let blob = pb::TaskDefinition::from(definition.clone()).encode_to_vec();
    let stored = pb::TaskDefinition::decode(blob.as_slice()).expect("a stored task definition decodes");
    match proto::convert::task_definition_from_pb(stored) {
        Ok(back) => assert_eq!(&back, definition, "a task definition changes through the store"),
        Err(e) => panic!("a valid task definition, stored, does not read back: {e}"),
    }
}
